//! The production path: the same search on PostgreSQL beside the baseline, two instances on one
//! database (their summed throughput, and how often the Notion stand-in saw each connection
//! called against `NOTION_RATE_LIMIT`), and the search and the connection list on a database
//! that also holds 100,000 other users with 300,000 connections, in rounds alternating with the
//! same on the empty one.

use std::{path::Path, process::Command, time::Duration};

use super::{
    CONNECTIONS, Compared, Instance as Started, POSTGRES_ADMIN_URL, Recorded, Row, Running,
    Service, Spread, Target, compare, cpu_time, per_request, set_up, start_service, wait_until_up,
    wrk,
};

/// Users and connections the scale rows add (three connections each).
pub(crate) const FILLER_USERS: u32 = 100_000;
pub(crate) const FILLER_CONNECTIONS_PER_USER: u32 = 3;
/// The per-connection limit of the run that checks the instances keep to it together.
pub(crate) const PACED_RATE_LIMIT: u32 = 100;

/// A database of its own on the local PostgreSQL server (`BENCH_POSTGRES_URL`, by default
/// [`POSTGRES_ADMIN_URL`]), created with `psql` and dropped when the run ends.
pub(crate) struct PostgresDatabase {
    admin_url: String,
    name: String,
    pub(crate) url: String,
}

impl PostgresDatabase {
    pub(crate) fn create() -> Self {
        Self::create_named("")
    }

    /// A database whose name ends with `suffix`, beside the others of this run.
    fn create_named(suffix: &str) -> Self {
        let admin_url =
            std::env::var("BENCH_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_ADMIN_URL.into());
        let name = format!("notion_connect_bench_{}{suffix}", std::process::id());
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        // The same server and parameters (`?sslmode=disable`, say), another database.
        let (address, parameters) = admin_url
            .split_once('?')
            .map_or((admin_url.as_str(), None), |(address, query)| {
                (address, Some(query))
            });
        let base = address.rsplit_once('/').map_or(address, |(base, _)| base);
        let url = match parameters {
            Some(query) => format!("{base}/{name}?{query}"),
            None => format!("{base}/{name}"),
        };
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// Whether a PostgreSQL server answers `psql` at the admin address.
    pub(crate) fn available() -> bool {
        let admin_url =
            std::env::var("BENCH_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_ADMIN_URL.into());
        Command::new("psql")
            .args([admin_url.as_str(), "-q", "-c", "SELECT 1"])
            .output()
            .is_ok_and(|out| out.status.success())
    }

    /// Adds [`FILLER_USERS`] users with [`FILLER_CONNECTIONS_PER_USER`] connections each, in
    /// a few thousand workspaces. Then vacuums and analyses the database and checkpoints it, so
    /// that neither autovacuum nor a checkpoint catching up with the load runs during the
    /// measurements after it.
    fn fill(&self) {
        psql(
            &self.url,
            &format!(
                "INSERT INTO users (id, username, username_key, password_hash, is_admin, \
                     created_at, updated_at) \
                 SELECT gen_random_uuid(), 'filler-' || n, 'filler-' || n, \
                     '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo', false, now(), now() \
                 FROM generate_series(1, {FILLER_USERS}) AS n; \
                 INSERT INTO notion_connections (id, user_id, bot_id, workspace_id, workspace_name, \
                     owner, access_token, key_id, status, created_at, updated_at) \
                 SELECT gen_random_uuid(), u.id, 'filler-bot-' || k, 'filler-ws-' || (hashtext(u.username) & 4095), \
                     'Filler', '{{}}', 'sealed', 'bench', 'active', now(), now() \
                 FROM users AS u CROSS JOIN generate_series(1, {FILLER_CONNECTIONS_PER_USER}) AS k \
                 WHERE u.username LIKE 'filler-%';"
            ),
        );
        // Each on its own: VACUUM cannot run inside the transaction a multi-statement command is.
        psql(&self.url, "VACUUM (ANALYZE)");
        psql(&self.url, "CHECKPOINT");
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

pub(crate) fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("psql (Debian: apt install postgresql-client)");
    assert!(status.success(), "psql failed: {sql}");
}

/// Where the production runs take place.
pub(crate) struct Setting<'a> {
    pub binary: &'a Path,
    pub dir: &'a Path,
    pub notion_base: &'a str,
    pub baseline: Target<'a>,
    pub seconds: u32,
    pub rounds: u32,
}

/// What the production runs found.
pub(crate) struct Production {
    pub rows: Vec<Row>,
    pub spreads: Vec<Spread>,
    /// What the stand-in saw while two instances shared connections limited to
    /// [`PACED_RATE_LIMIT`].
    pub paced: Recorded,
}

/// One instance on a database, its account set up; the search and list scripts written.
struct Instance {
    process: Running,
    url: String,
}

impl Instance {
    /// An instance on `database`; `public_url` is the first instance's address, which all
    /// share, as instances behind one load balancer do.
    async fn start(
        setting: &Setting<'_>,
        database: &PostgresDatabase,
        rate_limit: u32,
        public_url: Option<&str>,
    ) -> Self {
        let (process, url) = start_service(
            setting.binary,
            setting.dir,
            setting.notion_base,
            Started {
                database_url: Some(&database.url),
                rate_limit,
                public_url,
            },
        );
        wait_until_up(&format!("{url}/healthz")).await;
        Self { process, url }
    }

    fn target<'a>(&'a self, script: &'a Path) -> Target<'a> {
        Target {
            url: &self.url,
            pid: self.process.0.id(),
            script,
        }
    }
}

pub(crate) async fn run(setting: &Setting<'_>) -> Production {
    let database = PostgresDatabase::create();
    let first = Instance::start(setting, &database, 1000, None).await;
    let public_url = first.url.clone();
    let public_url = Some(public_url.as_str());
    let codes: Vec<String> = (0..CONNECTIONS).map(|n| format!("ws{n}")).collect();
    let (access, ids) = set_up(&first.url, &codes).await;
    let (search, list) = scripts(setting.dir, "postgres", &access, &ids);
    let warm = |instance: &Instance| {
        wrk::Run {
            url: &instance.url,
            connections: 4,
            seconds: 2,
            script: &search,
        }
        .run()
    };
    warm(&first);

    let mut production = Production {
        rows: Vec::new(),
        spreads: Vec::new(),
        paced: Recorded::default(),
    };
    let searches =
        |production: &mut Production, instance: &Instance, scenario, targets: [&'static str; 2]| {
            for (clients, target) in [1, 64].into_iter().zip(targets) {
                let (baseline, service, spread) = compare(
                    &setting.baseline,
                    &instance.target(&search),
                    Compared {
                        clients,
                        seconds: setting.seconds,
                        rounds: setting.rounds,
                        scenario,
                        target,
                    },
                );
                production.rows.extend([baseline, service]);
                production.spreads.push(spread);
            }
        };
    let lists = |instance: &Instance, scenario| {
        let service = Service {
            url: &instance.url,
            pid: instance.process.0.id(),
            seconds: setting.seconds,
        };
        [1, 64].map(|clients| service.row(scenario, clients, "", &list))
    };

    searches(
        &mut production,
        &first,
        "search on PostgreSQL",
        ["p99 ≤ 2 ms", "≥ 0.85 × baseline, p99 ≤ 30 ms"],
    );
    production
        .rows
        .extend(lists(&first, "GET /connections on PostgreSQL"));

    // Two instances on the database, 32 clients each.
    let second = Instance::start(setting, &database, 1000, public_url).await;
    warm(&second);
    production.rows.push(together(
        [&first, &second],
        &search,
        setting.seconds,
        "search on PostgreSQL, two instances together",
        "",
    ));
    drop((first, second));

    // Two instances whose connections' limit is far below what the clients ask of them.
    let paced = [
        Instance::start(setting, &database, PACED_RATE_LIMIT, public_url).await,
        Instance::start(setting, &database, PACED_RATE_LIMIT, public_url).await,
    ];
    let recorder = reqwest::Client::new();
    let stand_in = setting.notion_base.trim_end_matches("/v1");
    recorder
        .post(format!("{stand_in}/record/start"))
        .send()
        .await
        .expect("the stand-in records");
    production.rows.push(together(
        [&paced[0], &paced[1]],
        &search,
        setting.seconds,
        "search on PostgreSQL, two instances, NOTION_RATE_LIMIT=100",
        "≤ 100 calls/s per connection",
    ));
    production.paced = recorder
        .post(format!("{stand_in}/record/stop"))
        .send()
        .await
        .expect("the stand-in's record")
        .json()
        .await
        .expect("a record");
    drop(paced);

    // The same search and list on a database that also holds 100,000 other users with 300,000
    // connections, against the empty one, in alternating rounds (the machine's moods change
    // over a run; alternating shares them out).
    let filled_database = PostgresDatabase::create_named("_filled");
    let filled = Instance::start(setting, &filled_database, 1000, None).await;
    let (filled_access, filled_ids) = set_up(&filled.url, &codes).await;
    filled_database.fill();
    let (filled_search, filled_list) = scripts(setting.dir, "filled", &filled_access, &filled_ids);
    let empty = Instance::start(setting, &database, 1000, public_url).await;
    warm(&empty);
    wrk::Run {
        url: &filled.url,
        connections: 4,
        seconds: 2,
        script: &filled_search,
    }
    .run();
    for clients in [1, 64] {
        let searched = alternate(
            &[
                &setting.baseline,
                &empty.target(&search),
                &filled.target(&filled_search),
            ],
            clients,
            setting,
        );
        let [baseline, in_empty, in_filled] = searched;
        let ratio = |rows: &Row| {
            rows.measured.requests_per_second / baseline.measured.requests_per_second.max(1e-9)
        };
        let mut in_empty = in_empty.named(SCALE_EMPTY_SEARCH);
        let mut in_filled = in_filled.named(SCALE_FILLED_SEARCH);
        in_empty.ratio = Some(ratio(&in_empty));
        in_filled.ratio = Some(ratio(&in_filled));
        if clients == 1 {
            in_filled.target = "p50 within 10 % of the empty database's";
        }
        production.rows.extend([baseline, in_empty, in_filled]);
    }
    for clients in [1, 64] {
        let [in_empty, in_filled] = alternate(
            &[&empty.target(&list), &filled.target(&filled_list)],
            clients,
            setting,
        );
        production.rows.extend([
            in_empty.named(SCALE_EMPTY_LIST),
            in_filled.named(SCALE_FILLED_LIST),
        ]);
    }
    production
}

/// The rows the scale comparison writes, by name.
pub(crate) const SCALE_EMPTY_SEARCH: &str = "search on PostgreSQL, empty database";
pub(crate) const SCALE_FILLED_SEARCH: &str = "search on PostgreSQL, 300,000 other connections";
pub(crate) const SCALE_EMPTY_LIST: &str = "GET /connections on PostgreSQL, empty database";
pub(crate) const SCALE_FILLED_LIST: &str =
    "GET /connections on PostgreSQL, 300,000 other connections";

/// The search and list scripts for the account `access` with the connections `ids`, named
/// after `prefix`.
fn scripts(
    dir: &Path,
    prefix: &str,
    access: &str,
    ids: &[String],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let bearer = ("Authorization", format!("Bearer {access}"));
    let write = |name: String, paths: Vec<(String, Option<String>)>| {
        let path = dir.join(name);
        let lua = wrk::script("GET", &paths, std::slice::from_ref(&bearer));
        std::fs::write(&path, lua).expect("a script");
        path
    };
    let search = write(
        format!("{prefix}-search.lua"),
        ids.iter()
            .map(|id| {
                (
                    format!("/api/v1/connections/{id}/search?page_size=100"),
                    None,
                )
            })
            .collect(),
    );
    let list = write(
        format!("{prefix}-list.lua"),
        vec![("/api/v1/connections".to_owned(), None)],
    );
    (search, list)
}

/// Runs each of `targets` in turn, `rounds` times, with `clients` clients; one row each with
/// the medians of its runs (named later).
fn alternate<const N: usize>(
    targets: &[&Target<'_>; N],
    clients: u32,
    setting: &Setting<'_>,
) -> [Row; N] {
    let mut runs: [Vec<wrk::Measured>; N] = std::array::from_fn(|_| Vec::new());
    let mut cpu = [Duration::ZERO; N];
    for _ in 0..setting.rounds {
        for (i, target) in targets.iter().enumerate() {
            let (measured, spent) = super::measure(
                wrk::Run {
                    url: target.url,
                    connections: clients,
                    seconds: setting.seconds,
                    script: target.script,
                },
                target.pid,
            );
            runs[i].push(measured);
            cpu[i] += spent;
        }
    }
    std::array::from_fn(|i| {
        let measured = wrk::Measured::median(&runs[i]);
        Row {
            scenario: "search, baseline proxy",
            clients,
            target: "",
            cpu_per_request: per_request(cpu[i], measured.requests),
            measured,
            ratio: None,
        }
    })
}

impl Row {
    fn named(self, scenario: &'static str) -> Self {
        Self { scenario, ..self }
    }
}

/// Runs `script` against both instances at once, 32 clients each, and adds up what they
/// answered: requests, rates and errors summed, the slower instance's latencies, and the CPU
/// time of both per request.
fn together(
    instances: [&Instance; 2],
    script: &Path,
    seconds: u32,
    scenario: &'static str,
    target: &'static str,
) -> Row {
    let pids = instances.map(|instance| instance.process.0.id());
    let before: Duration = pids.iter().map(|&pid| cpu_time(pid)).sum();
    let running = instances.map(|instance| {
        wrk::Run {
            url: &instance.url,
            connections: 32,
            seconds,
            script,
        }
        .start()
    });
    let [a, b] = running.map(wrk::finish);
    let cpu = pids
        .iter()
        .map(|&pid| cpu_time(pid))
        .sum::<Duration>()
        .saturating_sub(before);
    let measured = wrk::Measured {
        requests_per_second: a.requests_per_second + b.requests_per_second,
        p50: a.p50.max(b.p50),
        p99: a.p99.max(b.p99),
        errors: a.errors + b.errors,
        requests: a.requests + b.requests,
    };
    Row {
        scenario,
        clients: 64,
        target,
        cpu_per_request: per_request(cpu, measured.requests),
        measured,
        ratio: None,
    }
}
