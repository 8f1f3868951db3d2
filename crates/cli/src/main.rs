//! The `stackhook` binary: thin. It parses the command line, sets up the
//! async runtime and hands over to `cli/`, one file per subcommand.

mod cli;
mod secret_key;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// See the `mimalloc` feature in crates/cli/Cargo.toml.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime
            .block_on(cli::serve::run(args))
            .map(|()| ExitCode::SUCCESS),
        Command::Invoke(args) => runtime.block_on(cli::invoke::run(args)),
        Command::Bench(args) => runtime.block_on(cli::bench::run(args)),
        Command::Ros(command) => Ok(runtime.block_on(cli::ros::run(command))),
        Command::Oos(command) => Ok(runtime.block_on(cli::oos::run(command))),
        Command::Rfs(command) => Ok(runtime.block_on(cli::rfs::run(command))),
        Command::MockRos(args) => runtime.block_on(cli::mock_ros::run(args)),
        Command::MockApi(args) => runtime.block_on(cli::mock_api::run(args)),
        Command::New(args) => cli::new::run(args),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(2)
    })
}
