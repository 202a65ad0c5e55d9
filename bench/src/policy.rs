//! ward-policy timings on generated policy sets of 100, 1,000 and 10,000
//! statements (criterion-style: warm-up, then samples of batched
//! iterations; median, min and max of the per-iteration time).
//!
//! Each set is one document with a realistic mix: per-service Allow
//! statements for one SPIFFE ID each (a third with an `IpAddress`
//! condition), and every tenth statement a wildcard-principal Deny on an
//! admin path. Two requests: one allowed by a statement in the middle of
//! the set, and one from an unknown principal (default deny, which has to
//! rule out every statement).

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ward_policy::{Context, PolicySet, Principal, Request, Schema, Source};

/// The generated document with `n` statements.
pub fn document(n: usize) -> String {
    let mut stmts = Vec::with_capacity(n);
    for i in 0..n {
        let s = if i % 10 == 9 {
            serde_json::json!({
                "Sid": format!("D{i}"), "Effect": "Deny", "Principal": "*",
                "Action": "http:*", "Resource": format!("route/svc{i}/admin*"),
            })
        } else if i % 3 == 0 {
            serde_json::json!({
                "Sid": format!("A{i}"), "Effect": "Allow",
                "Principal": {"Spiffe": format!("spiffe://corp.example/ns/n{i}/sa/s{i}")},
                "Action": ["http:GET", "http:HEAD"], "Resource": format!("route/svc{i}/*"),
                "Condition": {"IpAddress": {"ward:SourceIp": "10.0.0.0/8"}},
            })
        } else {
            serde_json::json!({
                "Sid": format!("A{i}"), "Effect": "Allow",
                "Principal": {"Spiffe": format!("spiffe://corp.example/ns/n{i}/sa/s{i}")},
                "Action": "http:*", "Resource": format!("route/svc{i}/v1/*"),
            })
        };
        stmts.push(s);
    }
    serde_json::json!({"Version": "2026-11-01", "Statement": stmts}).to_string()
}

fn request(principal: &str, resource: &str) -> Request {
    let mut context = Context::new();
    context
        .insert("ward:SourceIp", "10.1.2.3")
        .insert("ward:CurrentTime", "2026-12-01T00:00:00Z")
        .insert("ward:Protocol", "h1")
        .insert("ward:PrincipalType", "workload")
        .insert("ward:Method", "GET");
    Request {
        principal: Principal::spiffe(principal),
        action: "http:GET".into(),
        resource: resource.into(),
        context,
    }
}

/// Per-iteration nanoseconds of `samples` samples.
fn time_ns(samples: usize, mut f: impl FnMut()) -> Vec<f64> {
    // Warm up and size a batch to ~5 ms.
    let t0 = Instant::now();
    let mut warm = 0u64;
    while t0.elapsed() < Duration::from_millis(200) {
        f();
        warm += 1;
    }
    #[allow(clippy::cast_precision_loss)]
    let per = t0.elapsed().as_nanos() as f64 / warm.max(1) as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let batch = ((5_000_000.0 / per.max(1.0)) as u64).max(1);
    (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            #[allow(clippy::cast_precision_loss)]
            let ns = t.elapsed().as_nanos() as f64 / batch as f64;
            ns
        })
        .collect()
}

/// Prints result rows (one per sample) for every size.
pub fn run(sizes: &[usize], samples: usize) -> anyhow::Result<()> {
    for &n in sizes {
        let text = document(n);
        let t = Instant::now();
        let (set, _warnings) =
            PolicySet::compile(&[Source::new("bench.json", &text)], &Schema::gateway())
                .map_err(|e| anyhow::anyhow!("compiling the generated {n}-statement set: {e}"))?;
        let compile_ms = t.elapsed().as_secs_f64() * 1000.0;
        println!("policy\tward-policy\tcompile {n}\tms\tlower\t1\t{compile_ms:.3}");
        // Statement n/2 rounded to an unconditioned Allow (i % 3 != 0, i % 10 != 9).
        let mut mid = n / 2;
        while mid % 3 == 0 || mid % 10 == 9 {
            mid += 1;
        }
        let allow = request(
            &format!("spiffe://corp.example/ns/n{mid}/sa/s{mid}"),
            &format!("route/svc{mid}/v1/items"),
        );
        anyhow::ensure!(
            set.evaluate(&allow).allowed(),
            "the generated set should allow statement {mid}'s principal"
        );
        let unknown = request(
            "spiffe://corp.example/ns/x/sa/nobody",
            "route/svc1/v1/items",
        );
        anyhow::ensure!(
            !set.evaluate(&unknown).allowed(),
            "the generated set should deny an unknown principal"
        );
        for (name, req) in [("allow", &allow), ("default-deny", &unknown)] {
            let ns = time_ns(samples, || {
                black_box(set.evaluate(black_box(req)));
            });
            for (i, v) in ns.iter().enumerate() {
                println!(
                    "policy\tward-policy\t{name} {n}\tns/eval\tlower\t{}\t{v:.1}",
                    i + 1
                );
            }
        }
    }
    Ok(())
}

/// Writes the generated documents (for the Cedar comparison project).
pub fn write_docs(dir: &std::path::Path, sizes: &[usize]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for &n in sizes {
        let p = dir.join(format!("policy-{n}.json"));
        std::fs::write(&p, document(n)).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_set_compiles_and_decides_as_the_bench_expects() {
        let (set, _) = PolicySet::compile(
            &[Source::new("bench.json", document(100))],
            &Schema::gateway(),
        )
        .unwrap();
        let ok = request(
            "spiffe://corp.example/ns/n50/sa/s50",
            "route/svc50/v1/items",
        );
        assert!(set.evaluate(&ok).allowed());
        // Every tenth statement denies the admin path to everyone.
        let admin = request("spiffe://corp.example/ns/n50/sa/s50", "route/svc59/admin/x");
        assert!(!set.evaluate(&admin).allowed());
        // Conditioned statements need the source address in 10.0.0.0/8.
        let mut outside = request("spiffe://corp.example/ns/n3/sa/s3", "route/svc3/x");
        assert!(set.evaluate(&outside).allowed());
        outside
            .context
            .set("ward:SourceIp", vec!["192.0.2.1".into()]);
        assert!(!set.evaluate(&outside).allowed());
    }
}
