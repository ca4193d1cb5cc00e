//! Behaviour across processes: key locks between two processes (waiting, release on exit and on
//! SIGKILL) and resuming a sharded artifact after its writer was SIGKILLed.
//!
//! This test binary has its own `main` (harness = false): started with `XLVLM_STORE_TEST_ROLE`
//! set, it plays one child process of a test instead of running the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use xlvlm_store::{Column, FeatureTable, Key, Manifest, Store};

const ROLE_ENV: &str = "XLVLM_STORE_TEST_ROLE";
const STORE_ENV: &str = "XLVLM_STORE_TEST_ROOT";
const STOP_AFTER_ENV: &str = "XLVLM_STORE_TEST_STOP_AFTER";
/// Generous: the machine running the tests may be heavily loaded.
const TIMEOUT: Duration = Duration::from_secs(60);
const TOTAL_SHARDS: u32 = 6;

fn key() -> Key {
    Key::from_hash(&blake3::hash(b"a sharded extract"))
}

/// Shard `index` of the test artifact: deterministic content.
fn shard_table(index: u32) -> FeatureTable {
    let (rows, dim) = (150usize, 256usize);
    let base = index as usize * rows;
    FeatureTable::new()
        .with_column(
            "sample_id",
            Column::Utf8((0..rows).map(|r| format!("sample-{}", base + r)).collect()),
        )
        .with_column(
            "position",
            Column::Int64((0..rows).map(|r| (r % 7) as i64).collect()),
        )
        .with_column(
            "vector",
            Column::Vector {
                dim,
                values: (0..rows * dim)
                    .map(|i| (((base * dim + i) * 2654435761) % 1000) as f32 / 250.0 - 2.0)
                    .collect(),
                half: false,
            },
        )
        .with_metadata("shard", index.to_string())
}

fn manifest() -> Manifest {
    Manifest {
        key: key(),
        kind: "extract".into(),
        kind_version: 1,
        stage: "features".into(),
        params: serde_json::json!({"hooks": ["lm.layers.1"]}),
        inputs: BTreeMap::new(),
        fingerprints: BTreeMap::new(),
        files: Vec::new(),
        rows: Some(150 * u64::from(TOTAL_SHARDS)),
        summary: serde_json::Value::Null,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        finished_at: "2026-01-01T00:00:00.000Z".into(),
        seconds: 0.0,
        xlvlm_version: "0.1.0".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Child roles.

fn child(role: &str) {
    let store = Store::open(std::env::var(STORE_ENV).expect("store root")).expect("open store");
    let mut out = std::io::stdout();
    let mut say = |line: &str| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .expect("stdout");
    };
    match role {
        // Takes the lock, says so, and keeps it until stdin closes (or the process is killed).
        "hold" => {
            let _lock = store.lock(&key()).expect("lock");
            say("locked");
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
        // Blocks on the lock, then says it has it.
        "wait" => {
            say("waiting");
            let _lock = store.lock(&key()).expect("lock");
            say("acquired");
        }
        // Writes the missing shards under the key lock. With STOP_AFTER=n it stops after shard
        // n-1 with a half-written temporary file beside the shards, as a crash mid-write
        // leaves one, and waits to be killed.
        "shards" => {
            let stop_after: Option<u32> = std::env::var(STOP_AFTER_ENV)
                .ok()
                .map(|v| v.parse().expect("number"));
            let _lock = store.lock(&key()).expect("lock");
            let staging = store.stage(&key()).expect("stage");
            let done = staging.done_shards().expect("done shards");
            for index in 0..TOTAL_SHARDS {
                if done.contains(&index) {
                    continue;
                }
                staging
                    .write_shard(index, &shard_table(index))
                    .expect("write shard");
                say(&format!("shard {index}"));
                if stop_after == Some(index + 1) {
                    let next = staging.shard_path(index + 1);
                    let name = next.file_name().unwrap().to_string_lossy().into_owned();
                    let partial =
                        next.with_file_name(format!(".{name}.{}-0.tmp", std::process::id()));
                    std::fs::write(&partial, b"PAR1 half a shard").expect("partial write");
                    say("blocked");
                    let _ = std::io::stdin().read_to_end(&mut Vec::new());
                    panic!("the parent should have killed this process");
                }
            }
            say("finished");
        }
        other => panic!("unknown role {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Parent helpers.

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

fn spawn(role: &str, root: &Path, extra_env: &[(&str, &str)]) -> Proc {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env(ROLE_ENV, role)
        .env(STORE_ENV, root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn the test binary");
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let stdin = child.stdin.take();
    Proc {
        child,
        stdin,
        lines,
    }
}

impl Proc {
    fn expect_line(&self, want: &str) {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => assert_eq!(line, want),
            Err(RecvTimeoutError::Timeout) => {
                panic!("no {want:?} from the child within {TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the child exited before saying {want:?}")
            }
        }
    }

    /// The remaining lines until the child exits.
    fn rest(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.lines.recv_timeout(TIMEOUT) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("child still running after {TIMEOUT:?}; said {lines:?}")
                }
            }
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}; said {lines:?}");
        lines
    }

    fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL the child");
        self.child.wait().unwrap();
    }

    fn still_running_after(&mut self, wait: Duration) -> bool {
        std::thread::sleep(wait);
        self.child.try_wait().unwrap().is_none()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

fn second_process_waits_and_gets_the_lock_when_the_holder_is_sigkilled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let holder = spawn("hold", dir.path(), &[]);
    holder.expect_line("locked");
    assert!(
        store.try_lock(&key()).unwrap().is_none(),
        "the child holds the lock"
    );

    let mut waiter = spawn("wait", dir.path(), &[]);
    waiter.expect_line("waiting");
    assert!(
        waiter.still_running_after(Duration::from_millis(300)),
        "the waiter must block"
    );
    assert!(
        waiter.lines.try_recv().is_err(),
        "the waiter must not have the lock yet"
    );

    holder.sigkill();
    waiter.expect_line("acquired");
    assert!(waiter.rest().is_empty());
    assert!(
        store.try_lock(&key()).unwrap().is_some(),
        "released when the waiter exited"
    );
}

fn lock_passes_between_processes_on_release() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // The parent holds it: the child waits until the parent drops it.
    let held = store.lock(&key()).unwrap();
    let mut waiter = spawn("wait", dir.path(), &[]);
    waiter.expect_line("waiting");
    assert!(waiter.still_running_after(Duration::from_millis(300)));
    drop(held);
    waiter.expect_line("acquired");
    waiter.rest();

    // A child holds it: released when the child exits normally.
    let mut holder = spawn("hold", dir.path(), &[]);
    holder.expect_line("locked");
    assert!(store.try_lock(&key()).unwrap().is_none());
    drop(holder.stdin.take());
    assert!(holder.rest().is_empty());
    assert!(store.try_lock(&key()).unwrap().is_some());
}

/// Publishes the finished staging area of `root` and returns the manifest and every file's bytes.
fn publish_and_read(root: &Path) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let store = Store::open(root).unwrap();
    let staging = store.stage(&key()).unwrap();
    assert_eq!(
        staging.done_shards().unwrap(),
        (0..TOTAL_SHARDS).collect::<BTreeSet<_>>()
    );
    let published = staging.publish(manifest()).unwrap();
    store.verify(&key()).unwrap();
    let dir = store.artifact_dir(&key());
    let files = published
        .files
        .iter()
        .map(|f| (f.path.clone(), std::fs::read(dir.join(&f.path)).unwrap()))
        .collect();
    (std::fs::read(store.manifest_path(&key())).unwrap(), files)
}

fn uninterrupted(root: &Path) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let mut writer = spawn("shards", root, &[]);
    let said = writer.rest();
    assert_eq!(said.len(), TOTAL_SHARDS as usize + 1, "{said:?}");
    publish_and_read(root)
}

fn staging_dir(root: &Path) -> PathBuf {
    root.join("staging").join(key().as_str())
}

fn resumed_shards_after_sigkill_publish_the_same_bytes() {
    let reference_dir = tempfile::tempdir().unwrap();
    let (reference_manifest, reference_files) = uninterrupted(reference_dir.path());
    assert_eq!(reference_files.len(), TOTAL_SHARDS as usize);

    // Killed at a known point: 3 shards done and a half-written temporary file.
    let dir = tempfile::tempdir().unwrap();
    let writer = spawn("shards", dir.path(), &[(STOP_AFTER_ENV, "3")]);
    for index in 0..3 {
        writer.expect_line(&format!("shard {index}"));
    }
    writer.expect_line("blocked");
    writer.sigkill();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.stage(&key()).unwrap().done_shards().unwrap(),
        BTreeSet::from([0, 1, 2])
    );
    let leftovers: Vec<String> = std::fs::read_dir(staging_dir(dir.path()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert_eq!(leftovers.len(), 1, "the half-written shard is still there");
    assert!(!store.contains(&key()));

    // A new process resumes: it writes only the missing shards.
    let mut resumed = spawn("shards", dir.path(), &[]);
    assert_eq!(
        resumed.rest(),
        ["shard 3", "shard 4", "shard 5", "finished"]
    );
    let (manifest_bytes, files) = publish_and_read(dir.path());
    assert_eq!(files, reference_files);
    assert_eq!(manifest_bytes, reference_manifest);
}

fn killed_at_an_arbitrary_moment_still_resumes_to_the_same_bytes() {
    let reference_dir = tempfile::tempdir().unwrap();
    let (reference_manifest, reference_files) = uninterrupted(reference_dir.path());
    for delay_ms in [0u64, 3, 15] {
        let dir = tempfile::tempdir().unwrap();
        let writer = spawn("shards", dir.path(), &[]);
        writer.expect_line("shard 0");
        // Killed wherever it is: inside a Parquet write, an fsync, a rename or the log append.
        std::thread::sleep(Duration::from_millis(delay_ms));
        writer.sigkill();
        let store = Store::open(dir.path()).unwrap();
        let done = store.stage(&key()).unwrap().done_shards().unwrap();
        assert!(done.contains(&0), "{done:?}");
        let mut resumed = spawn("shards", dir.path(), &[]);
        let said = resumed.rest();
        assert_eq!(said.last().map(String::as_str), Some("finished"));
        assert_eq!(
            said.len() - 1,
            TOTAL_SHARDS as usize - done.len(),
            "{said:?} after {done:?}"
        );
        let (manifest_bytes, files) = publish_and_read(dir.path());
        assert_eq!(files, reference_files, "killed after {delay_ms} ms");
        assert_eq!(manifest_bytes, reference_manifest);
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        child(&role);
        return;
    }
    let tests: [(&str, fn()); 4] = [
        (
            "second_process_waits_and_gets_the_lock_when_the_holder_is_sigkilled",
            second_process_waits_and_gets_the_lock_when_the_holder_is_sigkilled,
        ),
        (
            "lock_passes_between_processes_on_release",
            lock_passes_between_processes_on_release,
        ),
        (
            "resumed_shards_after_sigkill_publish_the_same_bytes",
            resumed_shards_after_sigkill_publish_the_same_bytes,
        ),
        (
            "killed_at_an_arbitrary_moment_still_resumes_to_the_same_bytes",
            killed_at_an_arbitrary_moment_still_resumes_to_the_same_bytes,
        ),
    ];
    // Positional arguments filter by substring, like libtest; flags are ignored.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let start = Instant::now();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let outcome = std::panic::catch_unwind(test);
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    let passed = selected.len() - failed.len();
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        tests.len() - selected.len(),
        start.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        eprintln!("failed: {failed:?}");
        std::process::exit(101);
    }
}
