//! Sweep fan-out and cache-key stability, on experiment files written to a temporary folder.

use std::collections::BTreeMap;
use std::path::Path;

use xlvlm_dag::{FingerprintCache, Plan};

/// A small `.npy` file (4×3 f32) for import stages to fingerprint.
fn write_npy(path: &Path, seed: f32) {
    let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for i in 0..12 {
        bytes.extend_from_slice(&(i as f32 + seed).to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        write_npy(&dir.path().join("a.npy"), 0.0);
        write_npy(&dir.path().join("b.npy"), 1.0);
        World { dir }
    }

    /// Label → key of every node of the experiment `text`.
    fn keys(&self, text: &str) -> BTreeMap<String, String> {
        let plan = self.plan(text);
        plan.nodes
            .iter()
            .map(|n| (n.label.clone(), n.key.as_str().to_string()))
            .collect()
    }

    fn plan(&self, text: &str) -> Plan {
        let file = self.dir.path().join("exp.toml");
        std::fs::write(&file, text).unwrap();
        let exp = xlvlm_spec::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let mut cache = FingerprintCache::open(self.dir.path().join("fp.json"));
        Plan::build(&exp, &mut cache, &|spec| {
            spec.path.clone().ok_or_else(|| "no path".to_string())
        })
        .unwrap()
    }
}

const BASE: &str = r#"
[experiment]
name = "keys"
seed = 3

[stage.a]
kind = "import"
path = "a.npy"

[stage.b]
kind = "import"
path = "b.npy"

[stage.agg_a]
kind = "aggregate"
features = "a"

[stage.agg_b]
kind = "aggregate"
features = "b"

[stage.dec]
kind = "decompose"
input = "agg_a"
method = "kmeans"
num_concepts = 2

[stage.shift]
kind = "shift"
method = "shift_of_means"
source = "agg_a"
target = "agg_b"
"#;

#[test]
fn reordering_tables_and_keys_keeps_every_key() {
    let w = World::new();
    let reordered = r#"
[stage.shift]
target = "agg_b"
source = "agg_a"
method = "shift_of_means"
kind = "shift"

[stage.dec]
num_concepts = 2
method = "kmeans"
input = "agg_a"
kind = "decompose"

[stage.agg_b]
features = "b"
kind = "aggregate"

[stage.agg_a]
features = "a"
kind = "aggregate"

[stage.b]
path = "b.npy"
kind = "import"

[stage.a]
path = "a.npy"
kind = "import"

[experiment]
seed = 3
name = "keys"
"#;
    assert_eq!(w.keys(BASE), w.keys(reordered));
}

#[test]
fn integer_or_float_and_explicit_defaults_keep_the_key() {
    let w = World::new();
    let base = w.keys(BASE);
    // `1` vs `1.0` for a float parameter; defaults written out (kmeans max_iter 300, tol 1e-4,
    // n_init 1, seed = the experiment seed, column "vector", pool "mean").
    let explicit = BASE
        .replace(
            "num_concepts = 2\n",
            "num_concepts = 2\nmax_iter = 300\ntol = 0.0001\nn_init = 1\nseed = 3\ncolumn = \"vector\"\n",
        )
        .replace("features = \"b\"\n", "features = \"b\"\npool = \"mean\"\ncolumn = \"vector\"\n");
    assert_eq!(base, w.keys(&explicit));
    let float_tol = BASE.replace("num_concepts = 2\n", "num_concepts = 2\ntol = 1\n");
    let float_tol2 = BASE.replace("num_concepts = 2\n", "num_concepts = 2\ntol = 1.0\n");
    assert_eq!(w.keys(&float_tol), w.keys(&float_tol2));
    assert_ne!(w.keys(&float_tol)["dec"], base["dec"]);
}

#[test]
fn irrelevant_edits_and_renames_keep_keys() {
    let w = World::new();
    let base = w.keys(BASE);
    let edited = format!(
        "# a comment\n{}\n[stage.extra]\nkind = \"aggregate\"\nfeatures = \"b\"\nfilter = \"nothing\"\n",
        BASE.replace("seed = 3", "seed = 3\ndescription = \"now with words\"")
    );
    let edited_keys = w.keys(&edited);
    for (label, key) in &base {
        assert_eq!(&edited_keys[label], key, "{label} changed");
    }
    // A stage's name is not part of its key (nor of its downstream's).
    let renamed = w.keys(&BASE.replace("agg_a", "pooled_a"));
    assert_eq!(renamed["pooled_a"], base["agg_a"]);
    assert_eq!(renamed["dec"], base["dec"]);
}

#[test]
fn a_relevant_edit_changes_that_stage_and_its_downstream_only() {
    let w = World::new();
    let base = w.keys(BASE);
    let edited = w.keys(&BASE.replace("features = \"a\"\n", "features = \"a\"\npool = \"last\"\n"));
    for (label, changed) in [
        ("a", false),
        ("b", false),
        ("agg_b", false),
        ("agg_a", true),
        ("dec", true),
        ("shift", true),
    ] {
        assert_eq!(edited[label] != base[label], changed, "{label}");
    }
    // Changing the content of an input file changes its import and everything after it.
    write_npy(&w.dir.path().join("b.npy"), 7.0);
    let after = w.keys(BASE);
    assert_eq!(after["a"], base["a"]);
    assert_eq!(after["dec"], base["dec"]);
    assert_ne!(after["b"], base["b"]);
    assert_ne!(after["agg_b"], base["agg_b"]);
    assert_ne!(after["shift"], base["shift"]);
}

#[test]
fn sweeps_make_a_grid_and_fan_out_downstream() {
    let w = World::new();
    let text = BASE.replace(
        "num_concepts = 2\n",
        "num_concepts = { sweep = [2, 3, 4] }\nmax_iter = { sweep = [10, 20] }\n",
    );
    let plan = w.plan(&text);
    let dec: Vec<&str> = plan
        .nodes
        .iter()
        .filter(|n| n.stage == "dec")
        .map(|n| n.label.as_str())
        .collect();
    assert_eq!(dec.len(), 6, "{dec:?}");
    assert!(dec.contains(&"dec[max_iter=20,num_concepts=3]"), "{dec:?}");
    // Upstream stages that do not depend on a swept key appear once.
    assert_eq!(plan.nodes.iter().filter(|n| n.stage == "agg_a").count(), 1);
    let keys: std::collections::BTreeSet<_> = plan.nodes.iter().map(|n| n.key.clone()).collect();
    assert_eq!(
        keys.len(),
        plan.nodes.len(),
        "every instance has its own key"
    );
}

#[test]
fn instances_from_one_upstream_sweep_stay_together() {
    let w = World::new();
    // Both aggregates descend from the swept import `a`; the shift joins them point by point
    // (2 instances), it does not cross them (4).
    let text = BASE
        .replace(
            "path = \"a.npy\"\n",
            "path = \"a.npy\"\nshard_rows = { sweep = [1, 2] }\n",
        )
        .replace("features = \"b\"\n", "features = \"a\"\npool = \"first\"\n");
    let plan = w.plan(&text);
    let shifts: Vec<&str> = plan
        .nodes
        .iter()
        .filter(|n| n.stage == "shift")
        .map(|n| n.label.as_str())
        .collect();
    assert_eq!(shifts, ["shift[a.shard_rows=1]", "shift[a.shard_rows=2]"]);
    for n in plan.nodes.iter().filter(|n| n.stage == "shift") {
        let up: Vec<&str> = n
            .inputs
            .iter()
            .map(|(_, u)| plan.nodes[*u].label.as_str())
            .collect();
        let point = &n.coords["a.shard_rows"];
        assert!(
            up.iter()
                .all(|l| l.ends_with(&format!("a.shard_rows={point}]"))),
            "{up:?}"
        );
    }
    // Independent sweeps in two branches multiply.
    let text = BASE
        .replace(
            "path = \"a.npy\"\n",
            "path = \"a.npy\"\nshard_rows = { sweep = [1, 2] }\n",
        )
        .replace(
            "path = \"b.npy\"\n",
            "path = \"b.npy\"\nshard_rows = { sweep = [1, 2, 3] }\n",
        );
    assert_eq!(
        w.plan(&text)
            .nodes
            .iter()
            .filter(|n| n.stage == "shift")
            .count(),
        6
    );
}

#[test]
fn inheritance_with_from_overrides_and_keeps_the_rest() {
    let w = World::new();
    let text = format!("{BASE}\n[stage.dec2]\nfrom = \"dec\"\nnum_concepts = 3\n");
    let plan = w.plan(&text);
    let dec = plan.nodes.iter().find(|n| n.label == "dec").unwrap();
    let dec2 = plan.nodes.iter().find(|n| n.label == "dec2").unwrap();
    let (p1, p2) = (dec.params.key_params(), dec2.params.key_params());
    assert_eq!(p2["num_concepts"], 3);
    assert_eq!(p1["method"], p2["method"]);
    assert_eq!(dec.inputs[0].1, dec2.inputs[0].1);
}
