//! Replay speed: 1 million events over 1,000 subdivisions through the predictive policy
//! (forecasts included: every tick of every subdivision runs the short-horizon forecaster) and the
//! adaptive policy (its 17 default candidates, 7 of them predictive, replayed in shadow), with the
//! on-demand baseline measured in the same run for the ratio. Subdivisions replay on every core.
//!
//!     cargo bench --bench replay
//!
//! The trace is the bundled Google 2011 slice (`data/google2011/demo-events.csv.gz`: 268,797
//! events, 40 users, 3 h), tiled: each user's VMs are split over 25 subdivisions by a hash of
//! the VM id (1,000 subdivisions), and four copies follow one another in time (12 h, 1.08 M
//! events).

use std::time::Instant;

use cidrcast_core::model::VmEvent;
use cidrcast_sim::{replay, Params, Policy};

const SPLIT: u64 = 25;
const COPIES: usize = 4;
const RUNS: usize = 3;

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn tiled() -> Vec<VmEvent> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/google2011/demo-events.csv.gz"
    );
    let base = cidrcast_trace::read_all(path, Default::default()).expect("the bundled trace reads");
    let first = base.first().expect("events").time;
    let span = base.last().expect("events").time - first + 60.0;
    let mut out = Vec::with_capacity(base.len() * COPIES);
    for k in 0..COPIES {
        for e in &base {
            out.push(VmEvent {
                time: e.time + k as f64 * span,
                subdivision: format!("{}-{}", e.subdivision, fnv(&e.vm_id) % SPLIT),
                kind: e.kind,
                vm_id: format!("{}-{k}", e.vm_id),
                profile: e.profile.clone(),
            });
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(events: &[VmEvent], policy: &Policy, p: &Params) -> (f64, cidrcast_sim::Report) {
    let t = Instant::now();
    let r = replay(events, policy, p, false).expect("the replay runs");
    (t.elapsed().as_secs_f64(), r)
}

fn main() {
    // Criterion-style arguments (`--bench`) are ignored.
    let events = tiled();
    let subs: std::collections::HashSet<&str> =
        events.iter().map(|e| e.subdivision.as_str()).collect();
    let p = Params {
        lead_time: 60.0,
        shard_size: 64,
        min_shard_size: 64,
        max_shard_size: 64,
        window: None,
    };
    let predictive = Policy::parse("predictive", &[]).expect("default predictive policy");
    let on_demand = Policy::parse("on-demand", &[("release_delay".into(), "3600".into())])
        .expect("on-demand policy");
    let adaptive = Policy::parse("adaptive", &[]).expect("default adaptive policy");
    let (mut pt, mut bt, mut at) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..RUNS {
        let (s, r) = time(&events, &predictive, &p);
        pt.push(s);
        let (s, b) = time(&events, &on_demand, &p);
        bt.push(s);
        let (s, a) = time(&events, &adaptive, &p);
        at.push(s);
        last = Some((r, b, a));
    }
    // Each copy opens with the burst of VMs already running when the Google trace starts, so
    // both policies miss a large share here: this benchmark measures speed, not quality.
    let (r, b, a) = last.expect("one run");
    let (pm, bm, am) = (median(pt), median(bt), median(at));
    println!(
        "replay/predictive: {} events, {} subdivisions: median {:.2} s over {RUNS} runs ({:.2} M events/s); \
         on-demand baseline median {:.2} s; ratio {:.1}x; misses {:.1}% (on-demand {:.1}%), mean idle {:.0} (on-demand {:.0})",
        events.len(),
        subs.len(),
        pm,
        events.len() as f64 / pm / 1e6,
        bm,
        pm / bm,
        r.miss_rate * 100.0,
        b.miss_rate * 100.0,
        r.mean_idle_addresses,
        b.mean_idle_addresses
    );
    println!(
        "replay/adaptive: median {:.2} s over {RUNS} runs ({:.2} M events/s); ratio {:.1}x on-demand; misses {:.1}%, mean idle {:.0}",
        am,
        events.len() as f64 / am / 1e6,
        am / bm,
        a.miss_rate * 100.0,
        a.mean_idle_addresses
    );
}
