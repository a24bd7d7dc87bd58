//! Parser throughput and memory on kube-proxy-shaped dumps (`../shared/reference/perf.md`):
//! 1k, 5k, 10k and 30k services with 10 endpoints each (10k x 10 is about 320,000 rules, 33 MB;
//! 30k x 10 is 960,000 rules, 100 MB, to check that the parser stays linear in the input).

#![allow(unsafe_code)] // the counting allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use nfsim_benches::kube_proxy_dump;

/// Counts live heap bytes, to report the model's memory per rule.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn report_memory(text: &str) {
    let before = LIVE.load(Ordering::Relaxed);
    let parsed = nfsim::ruleset::parse(text);
    let after = LIVE.load(Ordering::Relaxed);
    let rules = parsed.ruleset.rule_count();
    eprintln!(
        "memory: {} bytes of input, {rules} rules, model heap {} bytes = {:.0} bytes per rule beyond the source text",
        text.len(),
        after - before,
        (after - before) as f64 / rules as f64
    );
    drop(parsed);
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.sample_size(10);
    for services in [1_000, 5_000, 10_000, 30_000] {
        if services == 30_000 {
            // About a second an iteration: ten iterations, not the 55 of linear sampling.
            group.sampling_mode(SamplingMode::Flat);
        }
        let text = kube_proxy_dump(services, 10, 1);
        if services == 10_000 {
            report_memory(&text);
        }
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("kube-proxy x10", services), &text, |b, text| {
            b.iter(|| {
                let parsed = nfsim::ruleset::parse(text);
                assert!(!parsed.has_errors());
                parsed.ruleset.rule_count()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
