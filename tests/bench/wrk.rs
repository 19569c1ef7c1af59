//! Running wrk and reading what it reports.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// What one wrk run measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Measured {
    pub requests_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// Non-2xx answers plus connection, read, write and timeout errors.
    pub errors: u64,
    pub requests: u64,
}

impl Measured {
    /// Several runs of one scenario as one: the median of each rate and latency, and the totals
    /// of requests and errors. A single slow or fast moment of a shared machine moves a median
    /// far less than a mean.
    pub(crate) fn median(runs: &[Measured]) -> Measured {
        let of = |field: fn(&Measured) -> f64| median(runs.iter().map(field).collect());
        Measured {
            requests_per_second: of(|m| m.requests_per_second),
            p50: Duration::from_secs_f64(of(|m| m.p50.as_secs_f64())),
            p99: Duration::from_secs_f64(of(|m| m.p99.as_secs_f64())),
            errors: runs.iter().map(|m| m.errors).sum(),
            requests: runs.iter().map(|m| m.requests).sum(),
        }
    }
}

/// The middle value, or the mean of the two middle ones; 0 for none.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A wrk run: `connections` clients over `threads` threads for `seconds`, with a Lua `script`.
pub(crate) struct Run<'a> {
    pub url: &'a str,
    pub connections: u32,
    pub seconds: u32,
    pub script: &'a Path,
}

impl Run<'_> {
    pub(crate) fn start(&self) -> Child {
        let threads = self.connections.clamp(1, 2);
        Command::new("wrk")
            .args([
                "--latency",
                &format!("-t{threads}"),
                &format!("-c{}", self.connections),
                &format!("-d{}s", self.seconds),
                "--timeout",
                "10s",
                "-s",
            ])
            .arg(self.script)
            .arg(self.url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wrk starts (Debian: apt install wrk)")
    }

    pub(crate) fn run(&self) -> Measured {
        finish(self.start())
    }
}

/// Waits for a started run and reads its report.
pub(crate) fn finish(child: Child) -> Measured {
    let output = child.wait_with_output().expect("wrk finishes");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&text)
}

fn duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

fn parse(report: &str) -> Measured {
    let mut measured = Measured::default();
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => measured.p50 = duration(value).unwrap_or_default(),
            ["99%", value] => measured.p99 = duration(value).unwrap_or_default(),
            ["Requests/sec:", value] => measured.requests_per_second = value.parse().unwrap_or(0.0),
            [count, "requests", "in", ..] => measured.requests = count.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                measured.errors += count.parse::<u64>().unwrap_or(0)
            }
            ["Socket", "errors:", rest @ ..] => {
                measured.errors += rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    measured
}

/// A Lua script that sends `method` with these headers, cycling through `requests` (a path,
/// and a body or none).
pub(crate) fn script(
    method: &str,
    requests: &[(String, Option<String>)],
    headers: &[(&str, String)],
) -> String {
    let paths: Vec<String> = requests.iter().map(|(p, _)| format!("{p:?}")).collect();
    let bodies: Vec<String> = requests
        .iter()
        .map(|(_, b)| b.as_ref().map_or("false".to_owned(), |b| format!("{b:?}")))
        .collect();
    let mut lua = format!(
        "local paths = {{ {} }}\nlocal bodies = {{ {} }}\nlocal i = 0\n",
        paths.join(", "),
        bodies.join(", ")
    );
    lua.push_str(&format!("wrk.method = {method:?}\n"));
    for (name, value) in headers {
        lua.push_str(&format!("wrk.headers[{name:?}] = {value:?}\n"));
    }
    lua.push_str(
        "request = function()\n  i = i % #paths + 1\n  local body = bodies[i] or nil\n  \
         return wrk.format(nil, paths[i], nil, body)\nend\n",
    );
    lua
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let report = "Running 10s test @ http://127.0.0.1:1/\n  2 threads and 64 connections\n\
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
            Latency    10.5ms    2.1ms  40.2ms   90.00%\n\
            Latency Distribution\n     50%  850.00us\n     75%    1.20ms\n     90%    2.00ms\n\
                 99%   30.10ms\n  20000 requests in 10.00s, 1.90GB read\n\
            Socket errors: connect 0, read 2, write 0, timeout 1\n\
            Non-2xx or 3xx responses: 4\nRequests/sec:   2000.50\nTransfer/sec:    190.00MB\n";
        let measured = parse(report);
        assert_eq!(measured.p50, Duration::from_micros(850));
        assert_eq!(measured.p99, Duration::from_micros(30_100));
        assert_eq!(measured.requests, 20_000);
        assert_eq!(measured.errors, 7);
        assert!((measured.requests_per_second - 2000.5).abs() < 1e-9);
    }

    #[test]
    fn runs_combine_into_medians_and_totals() {
        let run = |rate: f64, p50_ms: u64, p99_ms: u64, errors: u64| Measured {
            requests_per_second: rate,
            p50: Duration::from_millis(p50_ms),
            p99: Duration::from_millis(p99_ms),
            errors,
            requests: 100,
        };
        let odd = Measured::median(&[
            run(900.0, 3, 40, 1),
            run(1000.0, 1, 20, 0),
            run(50.0, 2, 90, 2),
        ]);
        assert_eq!(odd.requests_per_second, 900.0);
        assert_eq!(
            (odd.p50, odd.p99),
            (Duration::from_millis(2), Duration::from_millis(40))
        );
        assert_eq!((odd.errors, odd.requests), (3, 300));
        let even = Measured::median(&[run(1000.0, 1, 10, 0), run(2000.0, 3, 30, 0)]);
        assert_eq!(even.requests_per_second, 1500.0);
        assert_eq!(even.p50, Duration::from_millis(2));
    }
}
