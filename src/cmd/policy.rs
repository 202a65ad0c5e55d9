//! `ward policy …`: check, evaluate, test and simulate policies.
//!
//! Exit codes: 0 success (for `eval`: allowed); 1 error (bad policy, bad
//! input file; the message says which); 3 for a result a script should
//! notice: `eval` denied, `test` had a mismatch, `simulate` found requests
//! whose outcome changes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::Deserialize;
use ward_policy::{Context, Decision, Diagnostic, PolicySet, Principal, Request, Schema};

/// Exit code for "ran fine, but the answer is no / there are differences".
const NOTICE: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate every policy document in a directory; print every error and
    /// warning with file:line:column. Exit 1 on any error.
    Check {
        /// Policy directory (every *.json recursively; groups.json at the top).
        dir: PathBuf,
        /// Condition-key schema (JSON); default: the gateway's.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Schema preset when no --schema file is given.
        #[arg(long, value_enum, default_value_t = Preset::Gateway)]
        preset: Preset,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate one request and explain the decision. Exit 0 when allowed,
    /// 3 when denied.
    ///
    /// `ward:CurrentTime` defaults to now, `ward:PrincipalType` is derived
    /// from the principal and `ward:PrincipalGroups` from groups.json when
    /// the schema has them and they are not given; the output says so.
    Eval {
        /// Policy directory.
        dir: PathBuf,
        /// The principal: a SPIFFE ID (spiffe://…) or an e-mail address.
        #[arg(long)]
        principal: Option<String>,
        /// The principal's e-mail address, with a SPIFFE --principal.
        #[arg(long)]
        email: Option<String>,
        /// Action, e.g. http:GET, tcp:Connect, ca:Revoke.
        #[arg(long)]
        action: Option<String>,
        /// Resource, e.g. route/ledger/v1/entries.
        #[arg(long)]
        resource: Option<String>,
        /// Condition key value, `key=value`; repeat a key for several values.
        #[arg(long = "context", value_name = "KEY=VALUE")]
        context: Vec<String>,
        /// Request as JSON: {"principal": {"spiffe": …, "email": …},
        /// "action": …, "resource": …, "context": {…}}; flags override it.
        #[arg(long)]
        request: Option<PathBuf>,
        /// Condition-key schema (JSON); default: the gateway's.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Schema preset when no --schema file is given.
        #[arg(long, value_enum, default_value_t = Preset::Gateway)]
        preset: Preset,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run table-driven expectations against a policy directory; exit 3 on
    /// any mismatch, with a diff-style report.
    ///
    /// TESTS.json: {"Context": {defaults…}, "Tests": [{"Name": …,
    /// "Principal": "spiffe://…" | "a@b", "Email": …, "Action": …,
    /// "Resource": …, "Context": {…}, "Expect": "Allow" | "Deny",
    /// "Sid": optional deciding Sid}]}
    Test {
        /// Policy directory.
        dir: PathBuf,
        /// JSON file of requests and expected decisions.
        tests: PathBuf,
        /// Condition-key schema (JSON); default: the gateway's.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Schema preset when no --schema file is given.
        #[arg(long, value_enum, default_value_t = Preset::Gateway)]
        preset: Preset,
    },
    /// Replay recorded decisions against a proposed policy and list every
    /// request whose outcome changes; exit 3 if any does.
    ///
    /// Each log line is a gateway decision: `principal` (SPIFFE ID string,
    /// or {"spiffe", "email"}), optional `email`, `action`, `resource`,
    /// `context` (object of key → string or list), `result` ("Allow" or
    /// "Deny"), optional `decision_id`. Lines without `action` (connection
    /// close events) are skipped. `ward:PrincipalGroups` is recomputed from
    /// each directory's groups.json, so group changes are simulated too.
    Simulate {
        /// Policy directory in force.
        #[arg(long)]
        from: PathBuf,
        /// Proposed policy directory.
        #[arg(long)]
        to: PathBuf,
        /// Gateway decision log (JSON lines).
        #[arg(long)]
        log: PathBuf,
        /// Condition-key schema (JSON); default: the gateway's.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Schema preset when no --schema file is given.
        #[arg(long, value_enum, default_value_t = Preset::Gateway)]
        preset: Preset,
        /// Machine-readable output (one JSON object per changed request).
        #[arg(long)]
        json: bool,
    },
}

/// Built-in schemas.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Preset {
    /// The gateway's keys (http:*, tcp:Connect).
    Gateway,
    /// The CA admin API's keys (ca:CreateToken, ca:Revoke, ca:ReadLog).
    CaAdmin,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Check {
            dir,
            schema,
            preset,
            json,
        } => check(&dir, &load_schema(schema.as_deref(), preset)?, json),
        Command::Eval {
            dir,
            principal,
            email,
            action,
            resource,
            context,
            request,
            schema,
            preset,
            json,
        } => {
            let schema = load_schema(schema.as_deref(), preset)?;
            let set = compile(&dir, &schema)?;
            let mut req = match &request {
                Some(path) => {
                    let text = read(path)?;
                    serde_json::from_str::<Request>(&text)
                        .with_context(|| format!("{}: not a request", path.display()))?
                }
                None => Request::default(),
            };
            if let Some(p) = principal {
                req.principal = parse_principal(&p);
            }
            if let Some(e) = email {
                req.principal.email = Some(e);
            }
            if let Some(a) = action {
                req.action = a;
            }
            if let Some(r) = resource {
                req.resource = r;
            }
            let mut given: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for kv in &context {
                let Some((k, v)) = kv.split_once('=') else {
                    bail!("--context {kv}: expected KEY=VALUE, e.g. ward:SourceIp=10.1.2.3");
                };
                given.entry(k.to_owned()).or_default().push(v.to_owned());
            }
            for (k, v) in given {
                req.context.set(&k, v);
            }
            if req.action.is_empty() || req.resource.is_empty() {
                bail!("give --action and --resource (or a --request file that has them)");
            }
            if req.principal.spiffe.is_none() && req.principal.email.is_none() {
                bail!("give --principal (a SPIFFE ID or an e-mail address) or a --request file");
            }
            let assumed = fill_defaults(&set, &schema, &mut req, true);
            let d = set.evaluate(&req);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&decision_json(&req, &d, &assumed))?
                );
            } else {
                for a in &assumed {
                    println!("assumed: {a}");
                }
                print!("{}", d.explain());
                if d.error()
                    .is_some_and(|e| e.contains("required by the schema"))
                {
                    println!("hint: pass the missing key with --context KEY=VALUE");
                }
            }
            Ok(if d.allowed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(NOTICE)
            })
        }
        Command::Test {
            dir,
            tests,
            schema,
            preset,
        } => test(&dir, &tests, &load_schema(schema.as_deref(), preset)?),
        Command::Simulate {
            from,
            to,
            log,
            schema,
            preset,
            json,
        } => simulate(
            &from,
            &to,
            &log,
            &load_schema(schema.as_deref(), preset)?,
            json,
        ),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn load_schema(path: Option<&Path>, preset: Preset) -> anyhow::Result<Schema> {
    match path {
        Some(p) => Ok(Schema::from_json(&p.display().to_string(), &read(p)?)?),
        None => Ok(match preset {
            Preset::Gateway => Schema::gateway(),
            Preset::CaAdmin => Schema::ca_admin(),
        }),
    }
}

/// Compiles a directory, printing warnings to stderr.
fn compile(dir: &Path, schema: &Schema) -> anyhow::Result<PolicySet> {
    let (set, warnings) = ward_policy::dir::compile(dir, schema)
        .with_context(|| format!("policy directory {}", dir.display()))?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(set)
}

fn check(dir: &Path, schema: &Schema, json: bool) -> anyhow::Result<ExitCode> {
    let sources = ward_policy::dir::load(dir)?;
    let result = PolicySet::compile(&sources, schema);
    let (errors, warnings, set): (Vec<Diagnostic>, Vec<Diagnostic>, Option<PolicySet>) =
        match result {
            Ok((set, w)) => (vec![], w, Some(set)),
            Err(ward_policy::Error::Invalid(e)) => (e, vec![], None),
            Err(e) => return Err(e.into()),
        };
    if json {
        let out = serde_json::json!({
            "ok": errors.is_empty(),
            "files": sources.len(),
            "statements": set.as_ref().map(PolicySet::len),
            "policy_hash": set.as_ref().map(|s| s.hash().to_owned()),
            "errors": errors,
            "warnings": warnings,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for e in &errors {
            println!("error: {e}");
        }
        for w in &warnings {
            println!("warning: {w}");
        }
        match &set {
            Some(s) => println!(
                "ok: {} files, {} statements, {} warnings, policy hash {}",
                sources.len(),
                s.len(),
                warnings.len(),
                s.hash()
            ),
            None => println!(
                "{} errors in {}: the policy set is refused",
                errors.len(),
                dir.display()
            ),
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `spiffe://…` is a SPIFFE ID, anything with `@` an e-mail address.
fn parse_principal(p: &str) -> Principal {
    if p.contains('@') && !p.starts_with("spiffe://") {
        Principal {
            spiffe: None,
            email: Some(p.to_owned()),
        }
    } else {
        Principal::spiffe(p)
    }
}

/// Fills context keys the CLI can derive, when the schema has them and
/// they are absent; returns what it assumed, to be printed.
fn fill_defaults(set: &PolicySet, schema: &Schema, req: &mut Request, now: bool) -> Vec<String> {
    let mut assumed = Vec::new();
    let has = |k: &str| schema.key(k).is_some_and(|d| !d.name.ends_with('/'));
    if now && has("ward:CurrentTime") && req.context.get("ward:CurrentTime").is_none() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        req.context.insert("ward:CurrentTime", secs.to_string());
        assumed.push(format!(
            "ward:CurrentTime={secs} (now, epoch seconds; pass --context ward:CurrentTime=… to fix it)"
        ));
    }
    if has("ward:PrincipalType") && req.context.get("ward:PrincipalType").is_none() {
        let user = req.principal.email.is_some()
            || req
                .principal
                .spiffe
                .as_deref()
                .is_some_and(|s| s.split('/').nth(3) == Some("user"));
        let t = if user { "user" } else { "workload" };
        req.context.insert("ward:PrincipalType", t);
        assumed.push(format!("ward:PrincipalType={t} (from the principal)"));
    }
    if has("ward:PrincipalGroups") && req.context.get("ward:PrincipalGroups").is_none() {
        let groups: Vec<String> = set.groups_of(&req.principal).map(str::to_owned).collect();
        assumed.push(format!(
            "ward:PrincipalGroups=[{}] (from groups.json)",
            groups.join(", ")
        ));
        req.context.set("ward:PrincipalGroups", groups);
    }
    assumed
}

fn decision_json(req: &Request, d: &Decision, assumed: &[String]) -> serde_json::Value {
    serde_json::json!({
        "allowed": d.allowed(),
        "result": if d.allowed() { "Allow" } else { "Deny" },
        "outcome": d.outcome(),
        "explicit_deny": d.explicit_deny(),
        "deciding": d.deciding().collect::<Vec<_>>(),
        "matched": d.matched(),
        "warnings": d.warnings(),
        "error": d.error(),
        "policy_hash": d.policy_hash(),
        "assumed": assumed,
        "request": req,
    })
}

/// A principal in a tests file: a string (SPIFFE ID or e-mail) or an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TestPrincipal {
    Text(String),
    Object(Principal),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// Context defaults merged into every case.
    #[serde(rename = "Context", default)]
    context: Context,
    #[serde(rename = "Tests")]
    tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "Principal")]
    principal: TestPrincipal,
    #[serde(rename = "Email", default)]
    email: Option<String>,
    #[serde(rename = "Action")]
    action: String,
    #[serde(rename = "Resource")]
    resource: String,
    #[serde(rename = "Context", default)]
    context: Context,
    #[serde(rename = "Expect")]
    expect: ward_policy::Effect,
    #[serde(rename = "Sid", default)]
    sid: Option<String>,
}

fn test(dir: &Path, tests: &Path, schema: &Schema) -> anyhow::Result<ExitCode> {
    let set = compile(dir, schema)?;
    let text = read(tests)?;
    let file: TestFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected {{\"Context\": {{…}}, \"Tests\": [{{\"Principal\", \"Action\", \"Resource\", \"Expect\", …}}]}}",
            tests.display()
        )
    })?;
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut report = String::new();
    for (i, case) in file.tests.iter().enumerate() {
        let mut principal = match &case.principal {
            TestPrincipal::Text(t) => parse_principal(t),
            TestPrincipal::Object(p) => p.clone(),
        };
        if let Some(e) = &case.email {
            principal.email = Some(e.clone());
        }
        let mut context = file.context.clone();
        for (k, v) in case.context.iter() {
            context.set(k, v.to_vec());
        }
        let mut req = Request {
            principal,
            action: case.action.clone(),
            resource: case.resource.clone(),
            context,
        };
        fill_defaults(&set, schema, &mut req, false);
        let d = set.evaluate(&req);
        let actual = if d.allowed() {
            ward_policy::Effect::Allow
        } else {
            ward_policy::Effect::Deny
        };
        let sids: Vec<&str> = d.deciding().filter_map(|s| s.sid.as_deref()).collect();
        let sid_ok = case.sid.as_deref().is_none_or(|want| sids.contains(&want));
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("{} {} {}", case.action, case.resource, i + 1));
        if actual == case.expect && sid_ok {
            passed += 1;
            continue;
        }
        failed += 1;
        let who = req
            .principal
            .spiffe
            .as_deref()
            .or(req.principal.email.as_deref())
            .unwrap_or("?");
        let _ = writeln!(report, "FAIL #{} {name}", i + 1);
        let _ = writeln!(report, "  request: {who} {} {}", req.action, req.resource);
        let want_sid = case
            .sid
            .as_deref()
            .map(|s| format!(" by {s}"))
            .unwrap_or_default();
        let _ = writeln!(report, "  - expected: {:?}{want_sid}", case.expect);
        let got_sid = if sids.is_empty() {
            String::new()
        } else {
            format!(" by {}", sids.join(", "))
        };
        let _ = writeln!(
            report,
            "  + actual:   {actual:?}{got_sid} ({:?})",
            d.outcome()
        );
        if let Some(e) = d.error() {
            let _ = writeln!(report, "    error: {e}");
        }
        for m in d.matched() {
            let _ = writeln!(report, "    matched: {m}");
        }
    }
    print!("{report}");
    println!(
        "{passed} passed, {failed} failed (policy hash {})",
        set.hash()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOTICE)
    })
}

/// The request as `set` sees it: `ward:PrincipalGroups` recomputed from the
/// set's own groups.json (a change of groups is a policy change too), and
/// `ward:PrincipalType` derived from the principal when the log lacks it.
fn replay_request(set: &PolicySet, schema: &Schema, req: &Request) -> Request {
    let mut r = req.clone();
    if schema.key("ward:PrincipalGroups").is_some() {
        let groups = set.groups_of(&r.principal).map(str::to_owned).collect();
        r.context.set("ward:PrincipalGroups", groups);
    }
    fill_defaults(set, schema, &mut r, false);
    r
}

/// The fields `simulate` reads from a gateway decision-log line.
#[derive(Debug, Deserialize)]
struct LogLine {
    #[serde(default)]
    decision_id: Option<String>,
    principal: Option<TestPrincipal>,
    #[serde(default)]
    email: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    #[serde(default)]
    context: Context,
    #[serde(default)]
    result: Option<String>,
}

fn simulate(
    from: &Path,
    to: &Path,
    log: &Path,
    schema: &Schema,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let old = compile(from, schema)?;
    let new = compile(to, schema)?;
    let text = read(log)?;
    let (mut replayed, mut skipped, mut changed, mut drift) = (0usize, 0usize, 0usize, 0usize);
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let entry: LogLine = serde_json::from_str(line)
            .with_context(|| format!("{}:{lineno}: not a decision-log line", log.display()))?;
        let (Some(p), Some(action), Some(resource)) =
            (entry.principal, entry.action, entry.resource)
        else {
            skipped += 1;
            continue;
        };
        let mut principal = match p {
            TestPrincipal::Text(t) => parse_principal(&t),
            TestPrincipal::Object(p) => p,
        };
        if entry.email.is_some() {
            principal.email = entry.email;
        }
        let req = Request {
            principal,
            action,
            resource,
            context: entry.context,
        };
        replayed += 1;
        let a = old.evaluate(&replay_request(&old, schema, &req));
        let b = new.evaluate(&replay_request(&new, schema, &req));
        let word = |d: &Decision| if d.allowed() { "Allow" } else { "Deny" };
        if let Some(r) = &entry.result
            && r != word(&a)
        {
            drift += 1;
            eprintln!(
                "note: {}:{lineno}: recorded {r} but --from gives {} ({:?}); the log may come from another policy version",
                log.display(),
                word(&a),
                a.outcome()
            );
        }
        if a.allowed() == b.allowed() {
            continue;
        }
        changed += 1;
        let who = req
            .principal
            .spiffe
            .as_deref()
            .or(req.principal.email.as_deref())
            .unwrap_or("?");
        let sids = |d: &Decision| {
            d.deciding()
                .map(|s| {
                    s.sid
                        .clone()
                        .unwrap_or_else(|| format!("{}:{}", s.file, s.line))
                })
                .collect::<Vec<_>>()
        };
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "line": lineno,
                    "decision_id": entry.decision_id,
                    "principal": req.principal,
                    "action": req.action,
                    "resource": req.resource,
                    "from": {"result": word(&a), "outcome": a.outcome(), "deciding": sids(&a)},
                    "to": {"result": word(&b), "outcome": b.outcome(), "deciding": sids(&b)},
                })
            );
        } else {
            println!(
                "{}:{lineno}: {who} {} {}: {} -> {} ({:?}{})",
                log.display(),
                req.action,
                req.resource,
                word(&a),
                word(&b),
                b.outcome(),
                match sids(&b).as_slice() {
                    [] => String::new(),
                    s => format!(" by {}", s.join(", ")),
                }
            );
        }
    }
    if !json {
        println!(
            "{replayed} requests replayed, {changed} change outcome, {skipped} lines skipped, {drift} differ from their recorded result (from {} to {})",
            old.hash(),
            new.hash()
        );
    }
    Ok(if changed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOTICE)
    })
}
