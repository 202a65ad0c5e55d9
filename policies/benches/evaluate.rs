//! The issue's performance goal: median decision ≤ 1 µs with 10,000
//! statements over 500 routes. Run with `cargo bench -p ward-policy`.
//! (The comparison with the `cedar-policy` crate is not here yet: its build
//! is too heavy for the shared machine.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ward_policy::{Context, PolicySet, Principal, Request, Schema, Source};

const ROUTES: usize = 500;
const PER_ROUTE: usize = 20;

/// 500 routes × 20 statements: per route, reads and writes for a handful of
/// services, a condition on the source network or host, and a Deny.
fn sources() -> Vec<Source> {
    let mut out = Vec::new();
    for r in 0..ROUTES {
        let mut stmts = Vec::new();
        for s in 0..PER_ROUTE {
            let principal = format!("spiffe://corp.example/ns/prod/sa/svc{}", (r * 7 + s) % 300);
            let stmt = match s % 5 {
                0 => format!(
                    r#"{{"Sid": "R{r}S{s}", "Effect": "Allow", "Principal": {{"Spiffe": "{principal}"}}, "Action": ["http:GET", "http:HEAD"], "Resource": "route/r{r}/v1/*"}}"#
                ),
                1 => format!(
                    r#"{{"Sid": "R{r}S{s}", "Effect": "Allow", "Principal": {{"Spiffe": "{principal}"}}, "Action": ["http:POST", "http:PUT"], "Resource": "route/r{r}/v1/items/*", "Condition": {{"IpAddress": {{"ward:SourceIp": ["10.0.0.0/8", "fd00::/8"]}}}}}}"#
                ),
                2 => format!(
                    r#"{{"Sid": "R{r}S{s}", "Effect": "Allow", "Principal": {{"Spiffe": "spiffe://corp.example/ns/team{}/sa/*"}}, "Action": "http:*", "Resource": "route/r{r}/*", "Condition": {{"StringEquals": {{"ward:Host": "r{r}.corp.example"}}}}}}"#,
                    s % 7
                ),
                3 => format!(
                    r#"{{"Sid": "R{r}S{s}", "Effect": "Deny", "Principal": "*", "Action": "http:DELETE", "Resource": "route/r{r}/v1/admin/*"}}"#
                ),
                _ => format!(
                    r#"{{"Sid": "R{r}S{s}", "Effect": "Allow", "Principal": {{"Spiffe": "{principal}"}}, "Action": "tcp:Connect", "Resource": "route/r{r}"}}"#
                ),
            };
            stmts.push(stmt);
        }
        out.push(Source::new(
            format!("team{}/route{r}.json", r % 25),
            format!(
                r#"{{"Version": "2026-11-01", "Statement": [{}]}}"#,
                stmts.join(",\n")
            ),
        ));
    }
    out
}

fn request(principal: &str, action: &str, resource: &str) -> Request {
    let mut context = Context::new();
    context
        .insert("ward:SourceIp", "10.1.2.3")
        .insert("ward:CurrentTime", "2026-11-30T12:00:00Z")
        .insert("ward:Protocol", "h2")
        .insert("ward:PrincipalType", "workload")
        .insert("ward:Host", "r250.corp.example");
    Request {
        principal: Principal::spiffe(principal),
        action: action.into(),
        resource: resource.into(),
        context,
    }
}

fn bench(c: &mut Criterion) {
    let sources = sources();
    let (set, _) = PolicySet::compile(&sources, &Schema::gateway()).unwrap();
    assert_eq!(set.len(), ROUTES * PER_ROUTE);
    // svc for route 250, statement 0: (250 * 7 + 0) % 300 = 250.
    let allow = request(
        "spiffe://corp.example/ns/prod/sa/svc250",
        "http:GET",
        "route/r250/v1/items/42",
    );
    assert!(set.evaluate(&allow).allowed());
    let deny = request(
        "spiffe://corp.example/ns/prod/sa/nobody",
        "http:GET",
        "route/r250/v1/items/42",
    );
    assert!(!set.evaluate(&deny).allowed());
    let explicit = request(
        "spiffe://corp.example/ns/prod/sa/svc250",
        "http:DELETE",
        "route/r250/v1/admin/x",
    );
    assert!(set.evaluate(&explicit).explicit_deny());

    c.bench_function("evaluate/allow (10k statements, 500 routes)", |b| {
        b.iter(|| black_box(set.evaluate(black_box(&allow))))
    });
    c.bench_function("evaluate/implicit deny", |b| {
        b.iter(|| black_box(set.evaluate(black_box(&deny))))
    });
    c.bench_function("evaluate/explicit deny", |b| {
        b.iter(|| black_box(set.evaluate(black_box(&explicit))))
    });
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.bench_function("compile 10k statements", |b| {
        b.iter(|| black_box(PolicySet::compile(black_box(&sources), &Schema::gateway()).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
