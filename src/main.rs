//! The `notion-connect` command: parse the command line, load settings, run.

use std::{
    error::Error,
    io::{BufRead, IsTerminal},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};
use notion_connect::{
    api,
    auth::{
        Username, accounts,
        password::{Password, PasswordHasher},
    },
    chain::Chain,
    config::Settings,
    crypto::{self, TokenCipher},
    db,
    notion::vault::ConnectionVault,
    startup::Application,
    store, telemetry,
};

#[global_allocator]
static ALLOCATOR: notion_connect::allocator::ServiceAllocator =
    notion_connect::allocator::ServiceAllocator;

/// Connect Notion workspaces through OAuth, keep their tokens encrypted, and search them.
///
/// Settings come from environment variables (and a `.env` file); the flags below override them.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Overrides BIND_ADDR, for example 0.0.0.0:8000.
    #[arg(long, global = true, value_name = "ADDR")]
    bind_addr: Option<String>,
    /// Overrides DATABASE_URL.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Overrides PUBLIC_URL.
    #[arg(long, global = true, value_name = "URL")]
    public_url: Option<String>,
    /// Overrides LOG_FORMAT (pretty or json).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create a user. The password is read from a prompt, or from the first line of standard
    /// input when that is not a terminal.
    CreateUser {
        /// The new user's name.
        #[arg(long)]
        username: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Re-encrypt every stored Notion token with the first key of TOKEN_ENCRYPTION_KEYS.
    /// Safe to interrupt and to run again.
    RotateKeys,
    /// Print a new token encryption key entry (`kid:base64key`) for TOKEN_ENCRYPTION_KEYS.
    GenerateKey,
    /// Print the OpenAPI document.
    Openapi,
}

fn main() -> ExitCode {
    notion_connect::allocator::configure();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Openapi) => {
            print!("{}", api::spec_json());
            return ExitCode::SUCCESS;
        }
        Some(Command::GenerateKey) => {
            return match crypto::generate_key_entry() {
                Ok(entry) => {
                    println!("{entry}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("cannot generate a key: {e}")),
            };
        }
        _ => {}
    }

    let overrides: Vec<(&'static str, String)> = [
        ("BIND_ADDR", cli.bind_addr),
        ("DATABASE_URL", cli.database_url),
        ("PUBLIC_URL", cli.public_url),
        ("LOG_FORMAT", cli.log_format),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
    .collect();
    let settings = match Settings::from_env(&overrides) {
        Ok(settings) => settings,
        Err(e) => return fail(format!("configuration error: {e}")),
    };
    telemetry::init(settings.log_format);

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %Chain(&*e), "notion-connect failed");
            fail(Chain(&*e).to_string())
        }
    }
}

async fn run(command: Option<Command>, settings: Settings) -> Result<(), Box<dyn Error>> {
    match command {
        Some(Command::Migrate) => {
            db::migrate(&settings.database_url).await?;
            tracing::info!("migrations are up to date");
        }
        Some(Command::RotateKeys) => {
            db::migrate(&settings.database_url).await?;
            let db = db::connect(&settings.database_url, settings.statement_timeout).await?;
            let cipher = std::sync::Arc::new(TokenCipher::new(settings.token_keys.clone()));
            let vault = ConnectionVault::new(db, cipher.clone());
            let done = vault.reseal_with_primary_key(100, None).await?;
            println!(
                "re-encrypted {} connection(s) with key '{}'",
                done.rewritten,
                cipher.primary_key_id()
            );
            if done.pending_revocations > 0 {
                println!(
                    "re-encrypted {} token(s) waiting to be revoked",
                    done.pending_revocations
                );
            }
            if done.unreadable > 0 {
                println!(
                    "{} connection(s) could not be decrypted with their key and were left as they \
                     are; they must be connected again",
                    done.unreadable
                );
            }
        }
        Some(Command::CreateUser { username, admin }) => {
            db::migrate(&settings.database_url).await?;
            let db = db::connect(&settings.database_url, settings.statement_timeout).await?;
            let user = create_user(&db, &username, admin).await?;
            println!(
                "created {} '{}' ({})",
                if user.is_admin {
                    "administrator"
                } else {
                    "user"
                },
                user.username,
                user.id
            );
        }
        _ => {
            // Listening for the signals starts before the listener is bound: a SIGTERM sent as
            // soon as the service answers must stop it gracefully, not kill it.
            let stop = shutdown_signal();
            let app = Application::build(settings).await?;
            app.run_until_stopped(stop).await?;
            tracing::info!("stopped");
        }
    }
    Ok(())
}

async fn create_user(
    db: &sea_orm::DatabaseConnection,
    username: &str,
    admin: bool,
) -> Result<notion_connect::entity::user::Model, Box<dyn Error>> {
    let username = Username::parse(username)?;
    let password = Password::parse(read_password()?, username.as_str())?;
    let hasher = PasswordHasher::new(1, Duration::from_secs(60))?;
    let hash = hasher.hash(password.expose()).await?;
    match accounts::create_user(db, &username, hash, admin).await {
        Ok(user) => Ok(user),
        Err(store::StoreError::Conflict) => {
            Err(format!("the username '{}' is taken", username.as_str()).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Prompts twice without echo on a terminal; otherwise reads the first line of standard input.
fn read_password() -> Result<String, Box<dyn Error>> {
    if std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Password again: ")?;
        if password != again {
            return Err("the passwords differ".into());
        }
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn fail(message: String) -> ExitCode {
    eprintln!("notion-connect: {message}");
    ExitCode::FAILURE
}

/// Starts listening for SIGINT (Ctrl-C) and SIGTERM at once; the future completes on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Ok(mut only), Err(e)) | (Err(e), Ok(mut only)) => {
                tracing::error!(error = %e, "cannot listen for one of SIGINT and SIGTERM");
                only.recv().await;
            }
            (Err(e), Err(_)) => {
                tracing::error!(error = %e, "cannot listen for SIGINT or SIGTERM; the service runs until killed");
                std::future::pending::<()>().await;
            }
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}
