//! `xlvlm`: explain and steer vision-language models with cached, resumable pipelines.

mod commands;
mod report;
mod stages;
mod world;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xlvlm", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Where artifacts live.
    #[arg(
        long,
        env = "XLVLM_STORE",
        default_value = ".xlvlm/store",
        global = true
    )]
    store: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment: build every stage that is not cached, resume interrupted ones.
    Run {
        file: PathBuf,
        /// Rebuild this stage (all its sweep instances) even if cached. Repeatable.
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// Run only this stage and what it needs.
        #[arg(long, value_name = "STAGE")]
        only: Option<String>,
        /// Show what would run, run nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show what is cached, what will run, and why each stale stage is stale.
    Plan {
        file: PathBuf,
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        #[arg(long, value_name = "STAGE")]
        only: Option<String>,
    },
    /// Check an experiment file without running anything.
    Validate { file: PathBuf },
    /// Print the stage graph (sweep instances included).
    Dag {
        file: PathBuf,
        /// Graphviz dot instead of text.
        #[arg(long)]
        dot: bool,
    },
    /// Show an artifact: its manifest and a preview of its tables.
    Show {
        /// A key (or a unique prefix of at least 6 characters), or EXPERIMENT/STAGE.
        target: String,
        /// Rows of each table to preview.
        #[arg(long, default_value_t = 5)]
        rows: usize,
    },
    /// Models: what a checkpoint holds.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// The shapes world: a small image dataset in the COCO and VQAv2 formats.
    World {
        #[command(subcommand)]
        command: WorldCommand,
    },
    /// Remove artifacts that no experiment file under PATHS references.
    Gc {
        /// Folders or experiment files to keep artifacts for (default: the current folder).
        paths: Vec<PathBuf>,
        /// List what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Family, sizes, hook points, dtype and parameter count of a checkpoint.
    Inspect {
        /// A checkpoint folder or `hf:org/name[@revision]` (looked up in the local HF cache).
        source: String,
    },
}

#[derive(Subcommand)]
enum WorldCommand {
    /// Draw a world: images, captions, questions with answers, a caption-style variant.
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Number of images (split into train/val/test).
        #[arg(long, default_value_t = 3000)]
        size: usize,
        /// Side of the square images in pixels.
        #[arg(long, default_value_t = 64)]
        image_size: u32,
    },
    /// Train a toy LLaVA-1.5 checkpoint on a world, or fine-tune one on the caption style.
    Train(world::TrainArgs),
    /// Evaluate a checkpoint on a world split (VQA accuracy, captions, style rate).
    Eval(world::EvalArgs),
}

/// Exit codes: 1 a run failed, 2 the input (experiment file, arguments) is invalid.
pub enum Failure {
    Invalid(String),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Failed(e)
    }
}

fn main() -> ExitCode {
    // Die quietly when the reader of our output goes away (`xlvlm plan ... | head`).
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of a signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    xlvlm_model::keep_freed_memory();
    let cli = Cli::parse();
    report::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run {
            file,
            force,
            only,
            dry_run,
        } => commands::run(&cli.store, &file, &force, only.as_deref(), dry_run),
        Command::Plan { file, force, only } => {
            commands::plan(&cli.store, &file, &force, only.as_deref())
        }
        Command::Validate { file } => commands::validate(&file),
        Command::Dag { file, dot } => commands::dag(&file, dot),
        Command::Show { target, rows } => commands::show(&cli.store, &target, rows),
        Command::Model {
            command: ModelCommand::Inspect { source },
        } => commands::model_inspect(&source),
        Command::World {
            command:
                WorldCommand::Generate {
                    out,
                    seed,
                    size,
                    image_size,
                },
        } => commands::world_generate(&out, seed, size, image_size),
        Command::World {
            command: WorldCommand::Train(args),
        } => world::train(&args),
        Command::World {
            command: WorldCommand::Eval(args),
        } => world::eval(&args),
        Command::Gc { paths, dry_run } => commands::gc(&cli.store, &paths, dry_run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(msg)) => {
            eprintln!("{}", msg.trim_end());
            ExitCode::from(2)
        }
        Err(Failure::Failed(e)) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes on one line, `a: b: c`. A cause whose text the message already ends
/// with is left out: many library errors print their source in their own message.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
