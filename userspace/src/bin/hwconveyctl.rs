// SPDX-License-Identifier: GPL-2.0

//! hwconveyctl: read and set hwconvey's knobs, print its state, watch it.

use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

use hwconvey_tools::show;
use hwconvey_tools::text;
use hwconvey_tools::tree::{describe, Side, Tree, DEFAULT_ROOT};
use hwconvey_tools::watch;
use serde_json::{json, Value};

const USAGE: &str = "\
usage: hwconveyctl [--root DIR] [--json] COMMAND

commands:
  status                    both sides, whichever modules are loaded
  host                      the host's inventory, policy and counters
  guests                    one row per guest device on the host
  guest                     the guest driver's copy, projection and counters
  get PATH                  one attribute, e.g. host/initial_cpus
  set PATH VALUE            write one attribute, e.g. host/hwc0/quota_cpus 4
  request KIND N [node ID]  (guest) ask the host for cpus or memory (MiB),
                            wait for the answer; exit 1 unless granted
  watch [--interval MS] [--count N]
                            print changes as they happen (JSON lines with --json)

PATH is relative to the root (default /sys/kernel/hwconvey).
Exit status: 0 done, 1 failed (the errno is printed), 2 usage.";

struct Opts {
    tree: Tree,
    json: bool,
    args: Vec<String>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut root = DEFAULT_ROOT.to_owned();
    let mut json = false;
    let mut args = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--root" => root = it.next().ok_or("--root needs a directory")?,
            "--json" => json = true,
            "-h" | "--help" => return Err(String::new()),
            _ => args.push(a),
        }
    }
    Ok(Opts {
        tree: Tree::new(root),
        json,
        args,
    })
}

enum Failure {
    Usage(String),
    Failed(String),
}

type CmdResult = Result<(), Failure>;

fn failed(m: impl Into<String>) -> Failure {
    Failure::Failed(m.into())
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::Usage(m.into())
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn need(tree: &Tree, side: Side) -> CmdResult {
    if tree.has(side) {
        Ok(())
    } else {
        Err(failed(format!(
            "{}/{} does not exist: is hwconvey_{} loaded?",
            tree.root().display(),
            side.dir(),
            side.dir()
        )))
    }
}

fn cmd_status(o: &Opts) -> CmdResult {
    if !o.tree.has(Side::Host) && !o.tree.has(Side::Guest) {
        return Err(failed(format!(
            "{}: neither hwconvey module is loaded",
            o.tree.root().display()
        )));
    }
    if o.json {
        print_json(&show::status_json(&o.tree));
        return Ok(());
    }
    let mut out = String::new();
    if o.tree.has(Side::Host) {
        out.push_str("== host ==\n");
        show::dir_text(&o.tree, "host", &mut out);
        out.push_str("\n== guests ==\n");
        show::guests_text(&o.tree, &mut out);
    }
    if o.tree.has(Side::Guest) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("== guest ==\n");
        show::dir_text(&o.tree, "guest", &mut out);
    }
    print!("{out}");
    Ok(())
}

fn cmd_side(o: &Opts, side: Side) -> CmdResult {
    need(&o.tree, side)?;
    if o.json {
        print_json(&show::side_json(&o.tree, side));
    } else {
        let mut out = String::new();
        show::dir_text(&o.tree, side.dir(), &mut out);
        print!("{out}");
    }
    Ok(())
}

fn cmd_guests(o: &Opts) -> CmdResult {
    need(&o.tree, Side::Host)?;
    if o.json {
        let v = show::side_json(&o.tree, Side::Host);
        print_json(v.get("guests").unwrap_or(&Value::Null));
    } else {
        let mut out = String::new();
        show::guests_text(&o.tree, &mut out);
        print!("{out}");
    }
    Ok(())
}

fn cmd_get(o: &Opts, path: &str) -> CmdResult {
    let v = o
        .tree
        .read(path)
        .map_err(|e| failed(format!("{path}: {}", describe(&e))))?;
    if o.json {
        let name = path.rsplit('/').next().unwrap_or(path);
        println!("{}", text::value(name, &v));
    } else {
        println!("{v}");
    }
    Ok(())
}

fn cmd_set(o: &Opts, path: &str, value: &str) -> CmdResult {
    o.tree
        .write(path, value)
        .map_err(|e| failed(format!("{path}: writing {value:?}: {}", describe(&e))))
}

/// Sends a manual request through the guest's `request` file and waits for
/// the answer (`responses` grows).
fn cmd_request(o: &Opts, args: &[String]) -> CmdResult {
    let (kind, amount, node) = match args {
        [k, n] => (k, n, None),
        [k, n, node_kw, id] if node_kw == "node" => (k, n, Some(id)),
        _ => return Err(usage("request KIND N [node ID]")),
    };
    if kind != "cpus" && kind != "memory" {
        return Err(usage(format!(
            "request: KIND is cpus or memory, not {kind:?}"
        )));
    }
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| usage(format!("request: {s:?} is not a number")))
    };
    let amount = number(amount)?;
    let mut line = format!("{kind} {amount}");
    if let Some(id) = node {
        line.push_str(&format!(" node {}", number(id)?));
    }
    need(&o.tree, Side::Guest)?;
    let responses = || {
        o.tree
            .read("guest/responses")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    };
    let before =
        responses().ok_or_else(|| failed("guest/responses does not read: is a device bound?"))?;
    cmd_set(o, "guest/request", &line)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while responses().is_some_and(|n| n == before) {
        if Instant::now() > deadline {
            return Err(failed("no answer from the host within 5 s"));
        }
        sleep(Duration::from_millis(10));
    }
    let answer = o
        .tree
        .read("guest/last_response")
        .map_err(|e| failed(describe(&e)))?;
    let parsed = text::line(&answer);
    if o.json {
        println!("{parsed}");
    } else {
        println!("{answer}");
    }
    match parsed.get("status").and_then(Value::as_str) {
        Some("granted" | "partial") => Ok(()),
        _ => Err(failed(format!("the host did not grant {line:?}"))),
    }
}

fn cmd_watch(o: &Opts, args: &[String]) -> CmdResult {
    let mut interval = Duration::from_millis(100);
    let mut count: Option<u64> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| -> Result<u64, Failure> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| usage(format!("watch: {what} needs a number")))
        };
        match a.as_str() {
            "--interval" => interval = Duration::from_millis(value("--interval")?.max(1)),
            "--count" => count = Some(value("--count")?),
            other => return Err(usage(format!("watch: unknown argument {other:?}"))),
        }
    }
    if !o.tree.has(Side::Host) && !o.tree.has(Side::Guest) {
        return Err(failed(format!(
            "{}: neither hwconvey module is loaded",
            o.tree.root().display()
        )));
    }
    let start = Instant::now();
    let mut last = watch::sample(&o.tree);
    let mut seen = 0u64;
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        sleep(interval);
        let now = watch::sample(&o.tree);
        for c in watch::changes(&last, &now) {
            let t = start.elapsed().as_secs_f64();
            if o.json {
                let name = c.path.rsplit('/').next().unwrap_or(&c.path);
                let val =
                    |v: &Option<String>| v.as_deref().map_or(Value::Null, |v| text::value(name, v));
                println!(
                    "{}",
                    json!({ "time": t, "path": c.path, "old": val(&c.old), "new": val(&c.new) })
                );
            } else {
                let show = |v: &Option<String>| {
                    v.as_deref()
                        .map_or("(gone)".into(), |v| v.replace('\n', "; "))
                };
                println!("[{t:9.3}] {}: {} -> {}", c.path, show(&c.old), show(&c.new));
            }
            seen += 1;
        }
        last = now;
    }
}

fn run(o: &Opts) -> CmdResult {
    let args: Vec<&str> = o.args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["status"] => cmd_status(o),
        ["host"] => cmd_side(o, Side::Host),
        ["guest"] => cmd_side(o, Side::Guest),
        ["guests"] => cmd_guests(o),
        ["get", path] => cmd_get(o, path),
        ["set", path, value] => cmd_set(o, path, value),
        ["request", ..] => cmd_request(o, &o.args[1..]),
        ["watch", ..] => cmd_watch(o, &o.args[1..]),
        _ => Err(usage(format!("unknown command: {}", o.args.join(" ")))),
    }
}

fn main() -> ExitCode {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(m) => {
            if !m.is_empty() {
                eprintln!("hwconveyctl: {m}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("hwconveyctl: {m}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(m)) => {
            eprintln!("hwconveyctl: {m}");
            ExitCode::from(1)
        }
    }
}
