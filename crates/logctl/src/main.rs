//! `logctl`: Carteiro at the terminal — topics, produce, consume, offsets
//! and consumer groups, in the spirit of kafka-topics, kcat and rpk.
//!
//! Exit codes: 0 success, 1 any other failure, 2 bad arguments, 3 broker
//! unreachable, 4 unknown topic, partition or group.

mod bench;
mod commands;
mod output;

use std::process::ExitCode;

use carteiro_client::ClientError;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit code for bad arguments (also clap's).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the broker cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code for an unknown topic, partition or group.
pub const EXIT_NOT_FOUND: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "logctl",
    version,
    about = "Manage and use a Carteiro broker from the terminal"
)]
struct Cli {
    /// Broker address, HOST:PORT
    #[arg(long, global = true, env = "CARTEIRO_BROKER", default_value = carteiro_client::connection::BROKER_DEFAULT)]
    broker: String,
    /// Output: human tables, or JSON for scripts
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns (consume: one value per line).
    Table,
    /// JSON (consume: one JSON object per line).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, alter and delete topics
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Produce records from standard input or a file, one per line
    Produce(commands::ProduceArgs),
    /// Consume records and print them
    Consume(commands::ConsumeArgs),
    /// Show each partition's earliest and latest offsets
    Offsets(TopicArg),
    /// List, describe and reset consumer groups
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Measure the broker: produce, consume (replay) and end-to-end latency
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create a topic
    Create(commands::CreateArgs),
    /// List topics
    List,
    /// Show a topic's config and partitions
    Describe(TopicArg),
    /// Add partitions to a topic (--partitions: the new total)
    Alter(commands::AlterArgs),
    /// Delete a topic and all its records
    Delete(TopicArg),
}

#[derive(Debug, Subcommand)]
enum GroupsCommand {
    /// List consumer groups
    List,
    /// Show a group's committed offsets, log ends and lag
    Describe(GroupArg),
    /// Move a group's committed offsets for a topic
    ResetOffsets(commands::ResetArgs),
}

#[derive(Debug, Args)]
struct TopicArg {
    /// The topic
    topic: String,
}

#[derive(Debug, Args)]
struct GroupArg {
    /// The consumer group
    group: String,
}

fn exit_code(error: &ClientError) -> u8 {
    match error {
        ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
        ClientError::Invalid(_) => EXIT_USAGE,
        e if e.is_not_found() => EXIT_NOT_FOUND,
        e if e.code() == Some(tonic::Code::InvalidArgument) => EXIT_USAGE,
        _ => 1,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("logctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let out = output::Printer::new(cli.output);
        match cli.command {
            Command::Topics(TopicsCommand::Create(args)) => {
                commands::topics_create(&cli.broker, &out, args).await
            }
            Command::Topics(TopicsCommand::List) => commands::topics_list(&cli.broker, &out).await,
            Command::Topics(TopicsCommand::Describe(t)) => {
                commands::topics_describe(&cli.broker, &out, &t.topic).await
            }
            Command::Topics(TopicsCommand::Alter(args)) => {
                commands::topics_alter(&cli.broker, &out, args).await
            }
            Command::Topics(TopicsCommand::Delete(t)) => {
                commands::topics_delete(&cli.broker, &out, &t.topic).await
            }
            Command::Produce(args) => commands::produce(&cli.broker, &out, args).await,
            Command::Consume(args) => commands::consume(&cli.broker, &out, args).await,
            Command::Offsets(t) => commands::offsets(&cli.broker, &out, &t.topic).await,
            Command::Groups(GroupsCommand::List) => commands::groups_list(&cli.broker, &out).await,
            Command::Groups(GroupsCommand::Describe(g)) => {
                commands::groups_describe(&cli.broker, &out, &g.group).await
            }
            Command::Bench(command) => bench::run(&cli.broker, &out, command).await,
            Command::Groups(GroupsCommand::ResetOffsets(args)) => {
                commands::groups_reset(&cli.broker, &out, args).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logctl: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}
