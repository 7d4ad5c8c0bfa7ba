// SPDX-License-Identifier: GPL-2.0

//! hwconveyctl: read and set hwconvey's knobs, print its state, watch it.

use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use hwconvey_tools::show;
use hwconvey_tools::text;
use hwconvey_tools::tree::{attribute_name, describe, Side, Tree, DEFAULT_ROOT};
use hwconvey_tools::watch;
use serde_json::{json, Value};

/// Read and set hwconvey's knobs, print its state, watch it.
///
/// PATH is relative to the root. Exit status: 0 done, 1 failed (the errno is
/// printed), 2 usage.
#[derive(Parser)]
#[command(name = "hwconveyctl", version)]
struct Cli {
    /// hwconvey's sysfs root.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT, global = true)]
    root: String,
    /// JSON output (JSON lines for watch).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Both sides, whichever modules are loaded (the default).
    Status,
    /// The host's inventory, policy and counters.
    Host,
    /// One row per guest device on the host.
    Guests,
    /// The guest driver's knobs, and per bound device its copy, projection
    /// and counters.
    Guest,
    /// One attribute, e.g. host/initial_cpus, guest/virtio0/generation or
    /// host/hwc0/allocation/cpus; or a subdirectory's, e.g. host/hwc0/allocation.
    Get { path: String },
    /// Write one attribute, e.g. host/hwc0/quota_cpus 4.
    Set {
        path: String,
        /// Written as given, in one write(2) (a value may start with "-").
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// (guest) Ask the host for CPUs or memory (MiB) and wait for the answer;
    /// exit 1 unless granted.
    Request {
        kind: Kind,
        amount: u64,
        /// The NUMA node the guest would like them on.
        #[arg(long, value_name = "ID")]
        node: Option<u16>,
        /// The bound device to ask through (its link under guest/, e.g.
        /// virtio0); needed when several are bound.
        #[arg(long, value_name = "NAME")]
        device: Option<String>,
    },
    /// Print changes as they happen.
    Watch {
        /// Longest wait in milliseconds between samples; a change the modules announce
        /// (their `events` files) is sampled at once.
        #[arg(long, value_name = "MS", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// Stop after this many changes.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
}

/// What a request asks for, as the guest's `request` file names it.
#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Cpus,
    Memory,
}

struct Opts {
    tree: Tree,
    json: bool,
}

/// Why a command failed: printed, and the exit status is 1.
struct Failure(String);

type CmdResult = Result<(), Failure>;

fn failed(m: impl Into<String>) -> Failure {
    Failure(m.into())
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
        show::guest_text(&o.tree, &mut out);
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
        match side {
            Side::Host => show::dir_text(&o.tree, side.dir(), &mut out),
            Side::Guest => show::guest_text(&o.tree, &mut out),
        }
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
    // A subdirectory: its files, as one object.
    if o.tree.is_subdir(path) {
        if o.json {
            println!("{}", show::dir_json(&o.tree, path));
        } else {
            let mut out = String::new();
            show::dir_text(&o.tree, path, &mut out);
            print!("{out}");
        }
        return Ok(());
    }
    let v = o
        .tree
        .read(path)
        .map_err(|e| failed(format!("{path}: {}", describe(&e))))?;
    if o.json {
        println!("{}", text::value(&attribute_name(path), &v));
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

/// The bound guest device a request goes through: `named`, which must be
/// bound, or the only one bound.
fn request_device(o: &Opts, named: Option<&str>) -> Result<String, Failure> {
    let bound = o
        .tree
        .guest_devices()
        .map_err(|e| failed(format!("guest: {}", describe(&e))))?;
    match (named, bound.as_slice()) {
        (Some(name), _) if bound.iter().any(|d| d == name) => Ok(name.to_owned()),
        (Some(name), []) => Err(failed(format!(
            "no device {name:?}: no hwconvey device is bound to the guest driver"
        ))),
        (Some(name), _) => Err(failed(format!(
            "no device {name:?} is bound to the guest driver (bound: {})",
            bound.join(", ")
        ))),
        (None, [one]) => Ok(one.clone()),
        (None, []) => Err(failed(
            "no hwconvey device is bound to the guest driver (no guest/<device> link)",
        )),
        (None, _) => Err(failed(format!(
            "{} devices are bound to the guest driver ({}): name one with --device",
            bound.len(),
            bound.join(", ")
        ))),
    }
}

/// Sends a manual request through a bound device's `request` file and waits
/// for that device's answer (its `responses` grows), which it prints from
/// the device's `last_response/`.
fn cmd_request(
    o: &Opts,
    kind: Kind,
    amount: u64,
    node: Option<u16>,
    device: Option<&str>,
) -> CmdResult {
    let kind = match kind {
        Kind::Cpus => "cpus",
        Kind::Memory => "memory",
    };
    let mut line = format!("{kind} {amount}");
    if let Some(id) = node {
        line.push_str(&format!(" node {id}"));
    }
    need(&o.tree, Side::Guest)?;
    let dev = request_device(o, device)?;
    let responses_file = format!("guest/{dev}/responses");
    let responses = || {
        o.tree
            .read(&responses_file)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    };
    let before = responses().ok_or_else(|| failed(format!("{responses_file} does not read")))?;
    cmd_set(o, &format!("guest/{dev}/request"), &line)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while responses().is_some_and(|n| n == before) {
        if Instant::now() > deadline {
            return Err(failed(format!(
                "no answer from the host through {dev} within 5 s"
            )));
        }
        sleep(Duration::from_millis(10));
    }
    let (answer, parsed) = last_response(o, &dev)?;
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

/// The files of a guest device's last answer, in the order they are shown.
const RESPONSE_FILES: [&str; 6] = ["id", "kind", "status", "reason", "amount", "generation"];

/// The last answer of guest device `dev`, from its `last_response/` read as
/// of one answer (its `id` reads the same before and after the other files):
/// as the line "id <n> kind <k> status <s> reason <r> amount <n> generation
/// <g>", and as a JSON object with those keys.
fn last_response(o: &Opts, dev: &str) -> Result<(String, Value), Failure> {
    let dir = format!("guest/{dev}/last_response");
    let names = RESPONSE_FILES.map(str::to_owned);
    let mut line = Vec::new();
    let mut obj = serde_json::Map::new();
    for (name, text) in o.tree.read_all(&dir, &names) {
        let text = text.map_err(|e| failed(format!("{dir}/{name}: {}", describe(&e))))?;
        line.push(format!("{name} {text}"));
        obj.insert(
            name.clone(),
            text::value(&format!("last_response/{name}"), &text),
        );
    }
    Ok((line.join(" "), Value::Object(obj)))
}

fn cmd_watch(o: &Opts, interval: u64, count: Option<u64>) -> CmdResult {
    let interval = Duration::from_millis(interval);
    if !o.tree.has(Side::Host) && !o.tree.has(Side::Guest) {
        return Err(failed(format!(
            "{}: neither hwconvey module is loaded",
            o.tree.root().display()
        )));
    }
    let start = Instant::now();
    // Armed before the first sample: no change after it goes unannounced.
    let mut events = watch::Events::open(&o.tree);
    let mut last = watch::sample(&o.tree);
    // The first line says what wakes the watcher (and that the first sample is taken).
    if o.json {
        println!("{}", json!({ "time": 0.0, "watching": events.names() }));
    } else {
        println!(
            "[{:9.3}] watching; woken by: {}",
            0.0,
            events.names().join(", ")
        );
    }
    let mut seen = 0u64;
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        events
            .wait(interval)
            .map_err(|e| failed(format!("poll: {}", describe(&e))))?;
        // Armed before the sample, as at the start.
        events.reopen(&o.tree);
        let now = watch::sample(&o.tree);
        for c in watch::changes(&last, &now) {
            let t = start.elapsed().as_secs_f64();
            if o.json {
                let name = attribute_name(&c.path);
                let val = |v: &Option<String>| {
                    v.as_deref().map_or(Value::Null, |v| text::value(&name, v))
                };
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

fn run(o: &Opts, command: Command) -> CmdResult {
    match command {
        Command::Status => cmd_status(o),
        Command::Host => cmd_side(o, Side::Host),
        Command::Guest => cmd_side(o, Side::Guest),
        Command::Guests => cmd_guests(o),
        Command::Get { path } => cmd_get(o, &path),
        Command::Set { path, value } => cmd_set(o, &path, &value),
        Command::Request {
            kind,
            amount,
            node,
            device,
        } => cmd_request(o, kind, amount, node, device.as_deref()),
        Command::Watch { interval, count } => cmd_watch(o, interval, count),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = Opts {
        tree: Tree::new(cli.root),
        json: cli.json,
    };
    match run(&opts, cli.command.unwrap_or(Command::Status)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(m)) => {
            eprintln!("hwconveyctl: {m}");
            ExitCode::from(1)
        }
    }
}
