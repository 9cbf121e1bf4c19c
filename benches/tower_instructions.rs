//! The tower success path in instructions, counted by valgrind's callgrind through
//! `gungraun`: deterministic, so that a noisy shared machine cannot move the numbers.
//!
//! ```sh
//! cargo install gungraun-runner --version 0.20.0   # once: the runner gungraun drives
//! cargo bench -p telecho-retry-bench --bench tower_instructions
//! ```
//!
//! Each benchmark makes `CALLS` calls of the request in `common::request` (a `POST` with
//! eight headers and a 1 KiB body), built in the setup, outside what is counted. Per call:
//! divide the reported `Instructions` by `CALLS`. The variants: the bare `service_fn`,
//! `tower::retry::Retry` with a minimal policy that copies the request, the same with
//! tower's retry budget (`TpsBudget::default()`, the budget our default has too),
//! `TelEchoRetry`'s default, and, for scale, one request copy alone. Each service is called
//! in two patterns: one instance reused for every call (`poll_ready` + `call`), and
//! (`*_oneshot`) one service built once and cloned for every call,
//! `svc.clone().oneshot(request)`. Every service answers at once, so each call is one poll
//! of its future; ours in a tokio runtime's context (its attempt timeout is a tokio timer),
//! the others with no runtime.

mod common;

use std::hint::black_box;

use ::telecho_retry::TelEchoRetry;
use common::{
    call_to_end, copy_request, inner, oneshot_to_end, request, BudgetPolicy, MinimalPolicy, Req,
};
use gungraun::prelude::*;
use tower::retry::Retry;
use tower::Layer;

/// Calls per benchmark.
const CALLS: usize = 1000;

fn requests() -> Vec<Req> {
    (0..CALLS).map(request).collect()
}

/// The requests, and a tokio runtime (made in the setup, not counted) whose context our
/// layer's calls run in: its default attempt timeout makes a tokio timer, as every
/// user's does.
fn requests_in_runtime() -> (tokio::runtime::Runtime, Vec<Req>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    (runtime, requests())
}

#[library_benchmark]
#[bench::calls(setup = requests)]
fn bare(requests: Vec<Req>) {
    let mut svc = inner();
    for req in requests {
        black_box(call_to_end(&mut svc, req));
    }
}

#[library_benchmark]
#[bench::calls(setup = requests)]
fn tower_retry(requests: Vec<Req>) {
    let mut svc = Retry::new(MinimalPolicy { left: 5 }, inner());
    for req in requests {
        black_box(call_to_end(&mut svc, req));
    }
}

#[library_benchmark]
#[bench::calls(setup = requests)]
fn tower_retry_budget(requests: Vec<Req>) {
    let mut svc = Retry::new(BudgetPolicy::new(), inner());
    for req in requests {
        black_box(call_to_end(&mut svc, req));
    }
}

#[library_benchmark]
#[bench::calls(setup = requests_in_runtime)]
fn telecho_retry((runtime, requests): (tokio::runtime::Runtime, Vec<Req>)) {
    let _in = runtime.enter();
    let mut svc = TelEchoRetry::default().layer(inner());
    for req in requests {
        black_box(call_to_end(&mut svc, req));
    }
}

#[library_benchmark]
#[bench::calls(setup = requests)]
fn bare_oneshot(requests: Vec<Req>) {
    let svc = inner();
    for req in requests {
        black_box(oneshot_to_end(&svc, req));
    }
}

#[library_benchmark]
#[bench::calls(setup = requests)]
fn tower_retry_oneshot(requests: Vec<Req>) {
    let svc = Retry::new(MinimalPolicy { left: 5 }, inner());
    for req in requests {
        black_box(oneshot_to_end(&svc, req));
    }
}

#[library_benchmark]
#[bench::calls(setup = requests)]
fn tower_retry_budget_oneshot(requests: Vec<Req>) {
    let svc = Retry::new(BudgetPolicy::new(), inner());
    for req in requests {
        black_box(oneshot_to_end(&svc, req));
    }
}

#[library_benchmark]
#[bench::calls(setup = requests_in_runtime)]
fn telecho_retry_oneshot((runtime, requests): (tokio::runtime::Runtime, Vec<Req>)) {
    let _in = runtime.enter();
    let svc = TelEchoRetry::default().layer(inner());
    for req in requests {
        black_box(oneshot_to_end(&svc, req));
    }
}

#[library_benchmark]
#[bench::calls(setup = requests)]
fn one_request_copy(requests: Vec<Req>) {
    for req in &requests {
        black_box(copy_request(black_box(req)));
    }
}

library_benchmark_group!(
    name = tower_success_path,
    benchmarks = [
        bare,
        tower_retry,
        tower_retry_budget,
        telecho_retry,
        bare_oneshot,
        tower_retry_oneshot,
        tower_retry_budget_oneshot,
        telecho_retry_oneshot,
        one_request_copy
    ]
);

main!(library_benchmark_groups = tower_success_path);
