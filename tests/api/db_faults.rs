//! The database going away under load and coming back, on a private PostgreSQL server this test
//! starts and stops itself (initdb and pg_ctl from Debian's `postgresql` package).
//!
//! Without those tools the test says that it is skipped; `TEST_REQUIRE_POSTGRES=1` turns that
//! into a failure.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use notion_connect::entity::user;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app_with};

/// A PostgreSQL server of this test's own, in a temporary directory.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// `None` when the server's tools are not installed.
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .find(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())?;
        let dir = tempfile::tempdir().expect("a directory for the server");
        let data = dir.path().join("data");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = Self {
            bin,
            data,
            port,
            dir,
        };
        // PostgreSQL refuses to run as root; the package's own user runs it then.
        if running_as_root() {
            chown_to_postgres(server.dir.path());
        }
        server.run(
            "initdb",
            &[
                "-D",
                server.data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        server.start_server();
        Some(server)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-l",
                self.log().to_str().unwrap(),
                "start",
            ],
        );
    }

    fn stop_server(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let output = self
            .command(tool)
            .args(args)
            .output()
            .expect("the tool runs");
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// One of the server's tools, run as the `postgres` user when this test runs as root.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn chown_to_postgres(dir: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .expect("chown runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_rides_out_a_database_outage_and_loses_nothing() {
    let Some(server) = PrivatePostgres::start() else {
        assert!(
            std::env::var("TEST_REQUIRE_POSTGRES").is_err(),
            "PostgreSQL's server tools (initdb, pg_ctl) are required"
        );
        eprintln!("SKIPPED: the database outage test needs PostgreSQL's initdb and pg_ctl");
        return;
    };
    // The SQLite default is replaced by the private server before the app is built.
    let app = spawn_app_with(Backend::Sqlite, |vars| {
        vars.insert("DATABASE_URL".into(), server.url());
    })
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let owner = app.signed_in("owner").await;

    // Writers register accounts throughout; every 201 must survive.
    let created = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let (created, stop, client, base) = (
                created.clone(),
                stop.clone(),
                client.clone(),
                app.address.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let name = format!("writer{writer}-{n}");
                    let answer = client
                        .post(format!("{base}/api/v1/auth/register"))
                        .json(&serde_json::json!({ "username": name, "password": PASSWORD }))
                        .send()
                        .await;
                    match answer.map(|r| r.status().as_u16()) {
                        Ok(201) => created.lock().unwrap().push(name),
                        Ok(503) => tokio::time::sleep(Duration::from_millis(50)).await,
                        Ok(other) => panic!("register answered {other}"),
                        Err(e) => panic!("register did not answer: {e}"),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    server.stop_server();
    // Everything that needs the database answers 503 promptly (the client gives up after
    // 20 s, so a hang fails here), and the process keeps running.
    assert_eq!(status(&client, &app, "/readyz", None).await, 503);
    assert_eq!(
        status(&client, &app, "/api/v1/connections", Some(&owner.access)).await,
        503
    );
    assert_eq!(status(&client, &app, "/healthz", None).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;

    server.start_server();
    let mut ready = false;
    for _ in 0..100 {
        if status(&client, &app, "/readyz", None).await == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "the service is ready again without a restart");
    assert_eq!(
        status(&client, &app, "/api/v1/connections", Some(&owner.access)).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("no writer panicked");
    }

    let created = created.lock().unwrap().clone();
    assert!(!created.is_empty());
    for name in &created {
        let stored = user::Entity::find()
            .filter(user::Column::Username.eq(name.as_str()))
            .one(&app.db)
            .await
            .unwrap();
        assert!(stored.is_some(), "{name} was acknowledged but is missing");
    }
}

async fn status(client: &reqwest::Client, app: &TestApp, path: &str, token: Option<&str>) -> u16 {
    let mut request = client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path} did not answer: {e}"))
        .status()
        .as_u16()
}
