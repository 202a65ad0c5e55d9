//! Cedar's side of the policy comparison: the same generated policy sets
//! as `ward-bench policy` (same statement mix, same sizes, same allowed and
//! unknown principals), written in Cedar, timed the same way. Prints rows
//! of bench/run's results format, target `cedar`.
//!
//! Mapping: IAM `Resource` globs become `context.resource like "…"`
//! (Cedar globs only strings), `http:*` becomes an unconstrained action,
//! the `IpAddress` condition becomes `ip(context.source_ip).isInRange(…)`.

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};

fn policies(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i % 10 == 9 {
            s.push_str(&format!(
                "@id(\"D{i}\")\nforbid(principal, action, resource) when {{ context.resource like \"route/svc{i}/admin*\" }};\n"
            ));
        } else if i % 3 == 0 {
            s.push_str(&format!(
                "@id(\"A{i}\")\npermit(principal == Workload::\"spiffe://corp.example/ns/n{i}/sa/s{i}\", action in [Action::\"http:GET\", Action::\"http:HEAD\"], resource) when {{ context.resource like \"route/svc{i}/*\" && ip(context.source_ip).isInRange(ip(\"10.0.0.0/8\")) }};\n"
            ));
        } else {
            s.push_str(&format!(
                "@id(\"A{i}\")\npermit(principal == Workload::\"spiffe://corp.example/ns/n{i}/sa/s{i}\", action, resource) when {{ context.resource like \"route/svc{i}/v1/*\" }};\n"
            ));
        }
    }
    s
}

fn uid(s: &str) -> Result<EntityUid, String> {
    EntityUid::from_str(s).map_err(|e| format!("{s}: {e}"))
}

fn request(principal: &str, resource: &str) -> Result<Request, String> {
    let context = Context::from_json_str(
        &format!(r#"{{"resource": "{resource}", "source_ip": "10.1.2.3"}}"#),
        None,
    )
    .map_err(|e| e.to_string())?;
    Request::new(
        uid(&format!("Workload::\"{principal}\""))?,
        uid("Action::\"http:GET\"")?,
        uid("Route::\"app\"")?,
        context,
        None,
    )
    .map_err(|e| e.to_string())
}

fn time_ns(samples: usize, mut f: impl FnMut()) -> Vec<f64> {
    let t0 = Instant::now();
    let mut warm = 0u64;
    while t0.elapsed() < Duration::from_millis(200) {
        f();
        warm += 1;
    }
    let per = t0.elapsed().as_nanos() as f64 / warm.max(1) as f64;
    let batch = ((5_000_000.0 / per.max(1.0)) as u64).max(1);
    (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect()
}

fn main() -> Result<(), String> {
    let mut sizes = vec![100usize, 1000, 10000];
    let mut samples = 30usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--samples" => {
                samples = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--samples N")?
            }
            "--sizes" => {
                sizes = it
                    .next()
                    .ok_or("--sizes a,b,c")?
                    .split(',')
                    .map(|v| v.parse().map_err(|_| format!("bad size {v}")))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let authorizer = Authorizer::new();
    let entities = Entities::empty();
    for n in sizes {
        let text = policies(n);
        let t = Instant::now();
        let set = PolicySet::from_str(&text).map_err(|e| format!("cedar parse: {e}"))?;
        println!(
            "policy\tcedar\tcompile {n}\tms\tlower\t1\t{:.3}",
            t.elapsed().as_secs_f64() * 1000.0
        );
        let mut mid = n / 2;
        while mid % 3 == 0 || mid % 10 == 9 {
            mid += 1;
        }
        let allow = request(
            &format!("spiffe://corp.example/ns/n{mid}/sa/s{mid}"),
            &format!("route/svc{mid}/v1/items"),
        )?;
        let unknown = request(
            "spiffe://corp.example/ns/x/sa/nobody",
            "route/svc1/v1/items",
        )?;
        if authorizer.is_authorized(&allow, &set, &entities).decision() != Decision::Allow {
            return Err(format!(
                "cedar set of {n} should allow statement {mid}'s principal"
            ));
        }
        if authorizer
            .is_authorized(&unknown, &set, &entities)
            .decision()
            != Decision::Deny
        {
            return Err(format!("cedar set of {n} should deny an unknown principal"));
        }
        for (name, req) in [("allow", &allow), ("default-deny", &unknown)] {
            let ns = time_ns(samples, || {
                black_box(authorizer.is_authorized(black_box(req), &set, &entities));
            });
            for (i, v) in ns.iter().enumerate() {
                println!(
                    "policy\tcedar\t{name} {n}\tns/eval\tlower\t{}\t{v:.1}",
                    i + 1
                );
            }
        }
    }
    Ok(())
}
