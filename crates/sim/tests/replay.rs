//! Replay semantics on hand-computed scenarios, and the oracle's zero-miss property.

use cidrcast_core::model::{EventKind, VmEvent};
use cidrcast_sim::{decisions, replay, Decision, Params, Policy};

fn ev(time: f64, sub: &str, kind: EventKind, vm: &str) -> VmEvent {
    VmEvent {
        time,
        subdivision: sub.into(),
        kind,
        vm_id: vm.into(),
        profile: None,
    }
}

#[test]
fn on_demand_claims_on_a_miss_waits_for_pending_shards_and_releases_after_the_delay() {
    use EventKind::*;
    let events = vec![
        ev(100.0, "a", Create, "1"), // miss: claims shard 0, ready at 110
        ev(105.0, "a", Create, "2"), // miss: waits 5 s for shard 0
        ev(120.0, "a", Create, "3"), // shard 0 full: claims shard 1, waits 10 s
        ev(200.0, "a", Delete, "1"),
        ev(201.0, "a", Delete, "2"), // shard 0 empty at 201: released at 251
        ev(300.0, "a", Create, "4"), // shard 1 has room: a hit
    ];
    let p = Params {
        lead_time: 10.0,
        shard_size: 2,
        min_shard_size: 2,
        max_shard_size: 2,
        window: Some((100.0, 300.0)),
    };
    let r = replay(
        &events,
        &Policy::OnDemand {
            release_delay: 50.0,
        },
        &p,
        false,
    )
    .unwrap();
    assert_eq!(r.creations, 3, "the create at 300 is outside [100, 300)");
    assert_eq!(r.misses, 3);
    assert!(
        (r.mean_wait_s - 25.0 / 3.0).abs() < 1e-9,
        "{}",
        r.mean_wait_s
    );
    assert_eq!(r.p99_wait_s, 10.0);
    assert_eq!(r.shard_claims, 2);
    assert_eq!(r.shard_releases, 1);
    // Idle = held − used: 1·5 + 0·15 + 1·80 + 2·1 + 3·50 + 1·49 = 286 address-seconds over 200 s.
    assert!(
        (r.mean_idle_addresses - 286.0 / 200.0).abs() < 1e-9,
        "{}",
        r.mean_idle_addresses
    );
    // Shards 0 and 1 aggregate into one route; after the release, shard 1 alone is one route.
    assert_eq!(r.routes_max, 1);
}

#[test]
fn the_oracle_never_misses_and_holds_no_more_than_on_demand() {
    // A deterministic, bursty trace over three subdivisions.
    let mut events = Vec::new();
    let mut alive: Vec<Vec<String>> = vec![Vec::new(); 3];
    let mut state = 7u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        state >> 33
    };
    let mut n = 0;
    for step in 0..3000 {
        let t = 1000.0 + step as f64 * 7.3;
        let s = (next() % 3) as usize;
        let burst = if next() % 50 == 0 { 20 } else { 1 };
        for _ in 0..burst {
            if next() % 100 < 55 || alive[s].is_empty() {
                let vm = format!("vm{n}");
                n += 1;
                events.push(ev(t, &format!("s{s}"), EventKind::Create, &vm));
                alive[s].push(vm);
            } else {
                let k = (next() as usize) % alive[s].len();
                let vm = alive[s].swap_remove(k);
                events.push(ev(t, &format!("s{s}"), EventKind::Delete, &vm));
            }
        }
    }
    let p = Params {
        lead_time: 60.0,
        shard_size: 16,
        min_shard_size: 16,
        max_shard_size: 16,
        window: Some((2000.0, 22000.0)),
    };
    let oracle = replay(&events, &Policy::Oracle, &p, true).unwrap();
    assert_eq!(oracle.misses, 0);
    assert!(oracle.creations > 1000);
    let lazy = replay(&events, &Policy::OnDemand { release_delay: 1e9 }, &p, false).unwrap();
    assert!(oracle.mean_idle_addresses < lazy.mean_idle_addresses);
    let per = oracle.per_subdivision.unwrap();
    assert_eq!(per.len(), 3);
    let sum: f64 = per.iter().map(|(_, r)| r.mean_idle_addresses).sum();
    assert!((sum - oracle.mean_idle_addresses).abs() < 1e-6);
}

#[test]
fn bad_policies_parameters_and_params_are_named() {
    let e = Policy::parse("magic", &[]).unwrap_err();
    assert!(e.to_string().contains("policy magic"), "{e}");
    let e = Policy::parse("on-demand", &[("delay".into(), "3".into())]).unwrap_err();
    assert!(e.to_string().contains("parameter delay"), "{e}");
    let e = Policy::parse("on-demand", &[("release_delay".into(), "-1".into())]).unwrap_err();
    assert!(e.to_string().contains("release_delay=-1"), "{e}");
    // The adaptive policy's candidates: each named when it does not parse or is not causal.
    let experts = |v: &str| Policy::parse("adaptive", &[("experts".into(), v.into())]);
    let e = experts("on-demand release_delay=0; oracle").unwrap_err();
    assert!(
        e.to_string().contains("experts=oracle") && e.to_string().contains("causal"),
        "{e}"
    );
    let e = experts("predictive quantile").unwrap_err();
    assert!(e.to_string().contains("`quantile` is not key=value"), "{e}");
    let e = experts("warm-target warm=3").unwrap_err();
    assert!(e.to_string().contains("parameter warm"), "{e}");
    let e = experts(" ; ").unwrap_err();
    assert!(e.to_string().contains("at least one candidate"), "{e}");
    let e = Policy::parse("adaptive", &[("epoch".into(), "0".into())]).unwrap_err();
    assert!(e.to_string().contains("epoch=0"), "{e}");
    let e = Policy::parse("adaptive", &[("lambda".into(), "1".into())]).unwrap_err();
    assert!(e.to_string().contains("miss_cost"), "{e}");
    let e = Policy::parse("adaptive", &[("standby".into(), "1.5".into())]).unwrap_err();
    assert!(e.to_string().contains("standby=1.5"), "{e}");
    let events = vec![ev(1.0, "a", EventKind::Create, "x")];
    let p = Params {
        lead_time: -5.0,
        shard_size: 64,
        min_shard_size: 64,
        max_shard_size: 64,
        window: None,
    };
    let e = replay(&events, &Policy::Oracle, &p, false).unwrap_err();
    assert!(e.to_string().contains("lead time -5"), "{e}");
    let e = replay(
        &[],
        &Policy::Oracle,
        &Params {
            lead_time: 1.0,
            ..p
        },
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no events"), "{e}");
}

#[test]
fn pool_policies_keep_their_floor_and_release_after_their_cooldown() {
    use EventKind::*;
    // One VM a minute for ten minutes, all gone at 2000.
    let mut events: Vec<VmEvent> = (0..10)
        .map(|i| ev(1000.0 + 60.0 * i as f64, "a", Create, &format!("v{i}")))
        .collect();
    events.extend((0..10).map(|i| ev(2000.0, "a", Delete, &format!("v{i}"))));
    let p = Params {
        lead_time: 30.0,
        shard_size: 4,
        min_shard_size: 4,
        max_shard_size: 4,
        window: Some((1000.0, 2600.0)),
    };
    // Keeping 4 free addresses (one shard's worth) ahead: never a miss at one VM a minute.
    let warm = Policy::parse("warm-target", &[("warm_ip_target".into(), "4".into())]).unwrap();
    let r = replay(&events, &warm, &p, false).unwrap();
    assert_eq!(r.misses, 0, "{r:?}");
    // After 2000 everything is empty: released 30 s later down to the floor (4 free = 1 shard).
    assert!(r.shard_releases >= 2, "{r:?}");
    let water = Policy::parse("watermark", &[("pre_allocate".into(), "4".into())]).unwrap();
    let w = replay(&events, &water, &p, false).unwrap();
    assert_eq!(w.misses, 0, "{w:?}");
    // Cilium's 180 s excess release delay: nothing goes before 2180, so it holds more.
    assert!(
        w.mean_idle_addresses > r.mean_idle_addresses,
        "{w:?} vs {r:?}"
    );
    let e = Policy::parse("watermark", &[("warm_ip_target".into(), "4".into())]).unwrap_err();
    assert!(
        e.to_string()
            .contains("pre_allocate, min_allocate, max_above_watermark"),
        "{e}"
    );
}

#[test]
fn sweep_marks_the_pareto_front_and_each_familys_best() {
    use cidrcast_sim::sweep::{grid, svg, sweep};
    use EventKind::*;
    let mut events = Vec::new();
    for i in 0..200 {
        let t = 1000.0 + 30.0 * i as f64;
        events.push(ev(t, "a", Create, &format!("v{i}")));
        if i >= 5 {
            events.push(ev(t + 1.0, "a", Delete, &format!("v{}", i - 5)));
        }
    }
    let p = Params {
        lead_time: 60.0,
        shard_size: 4,
        min_shard_size: 4,
        max_shard_size: 4,
        window: Some((1500.0, 7000.0)),
    };
    let pts = sweep(&events, &p, &grid()).unwrap();
    assert_eq!(pts.len(), grid().len());
    // The oracle has no miss and the least idle: best of its family, but a reference, off the
    // front of the causal policies.
    let oracle = pts.iter().find(|q| q.family == "oracle").unwrap();
    assert_eq!(oracle.miss_rate, 0.0);
    assert!(oracle.best_01pct && oracle.best_1pct && !oracle.pareto);
    // No front point is dominated by another causal point, and every causal point off the front
    // is dominated by one.
    let causal: Vec<_> = pts.iter().filter(|q| q.family != "oracle").collect();
    let dominates = |b: &&cidrcast_sim::sweep::Point, a: &cidrcast_sim::sweep::Point| {
        b.miss_rate <= a.miss_rate
            && b.mean_idle_addresses <= a.mean_idle_addresses
            && (b.miss_rate < a.miss_rate || b.mean_idle_addresses < a.mean_idle_addresses)
    };
    assert!(causal.iter().any(|q| q.pareto));
    for a in &causal {
        assert_eq!(a.pareto, !causal.iter().any(|b| dominates(b, a)), "{a:?}");
    }
    // At most one best per family and bound, and it meets the bound.
    for fam in ["on-demand", "warm-target", "watermark"] {
        let best: Vec<_> = pts
            .iter()
            .filter(|q| q.family == fam && q.best_1pct)
            .collect();
        assert!(best.len() <= 1);
        assert!(best.iter().all(|q| q.miss_rate <= 0.01));
    }
    let plot = svg(&pts, "t");
    // Every point up to twice the least idle is drawn (plus six legend dots), no other.
    let idle: Vec<f64> = pts.iter().map(|q| q.mean_idle_addresses).collect();
    let least = idle.iter().copied().fold(f64::INFINITY, f64::min);
    let most = idle.iter().copied().fold(1.0, f64::max);
    let drawn = idle
        .iter()
        .filter(|&&v| v <= most.min(2.0 * least) * 1.05)
        .count();
    assert!(drawn < pts.len(), "the large warm pools fall off the plot");
    assert!(plot.starts_with("<svg"));
    assert_eq!(plot.matches("<circle").count(), drawn + 6);
}

/// The bundled Google 2011 slice (40 users, 3 h).
fn demo_events() -> Vec<VmEvent> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/google2011/demo-events.csv.gz"
    );
    cidrcast_trace::TraceReader::open(path, Default::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn the_predictive_and_adaptive_policies_are_causal() {
    // Decisions made before T must not change when everything from T on is different.
    let events = demo_events();
    let cut = 6000.0;
    // The perturbed future: every VM created from the cut on is created twice (twin ids), and
    // deleted with its twin.
    let born_before: std::collections::HashSet<&str> = events
        .iter()
        .filter(|x| x.kind == EventKind::Create && x.time < cut)
        .map(|x| x.vm_id.as_str())
        .collect();
    let mut perturbed = Vec::new();
    for e in &events {
        perturbed.push(e.clone());
        if e.time >= cut && !(e.kind == EventKind::Delete && born_before.contains(e.vm_id.as_str()))
        {
            let mut twin = e.clone();
            twin.vm_id = format!("{}-twin", e.vm_id);
            perturbed.push(twin);
        }
    }
    let p = Params {
        lead_time: 60.0,
        shard_size: 64,
        min_shard_size: 64,
        max_shard_size: 64,
        window: None,
    };
    // Every part of the policy: the empirical and periodic forecasts, the longer release
    // horizon, and the prefetcher's feedback on misses.
    let params: Vec<(String, String)> = [
        ("quantile", "0.9"),
        ("repeats", "2"),
        ("keep_horizon", "1800"),
        ("target_miss", "0.01"),
        ("per_miss", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let predictive = Policy::parse("predictive", &params).unwrap();
    // The adaptive policy over candidates that differ, with short epochs so that leaders change
    // before the cut: its scores see only the past too.
    let adaptive = adaptive(
        "on-demand release_delay=300; warm-target warm_ip_target=8; \
         predictive quantile=0.9 keep_horizon=1800 target_miss=0.01",
        &[
            ("epoch", "120"),
            ("half_life", "1800"),
            ("miss_cost", "0.5"),
        ],
    );
    for policy in [predictive, adaptive] {
        let before = |d: Vec<cidrcast_sim::Decision>| -> Vec<_> {
            d.into_iter().filter(|x| x.time < cut).collect()
        };
        let a = before(cidrcast_sim::decisions(&events, &policy, &p).unwrap());
        let b = before(cidrcast_sim::decisions(&perturbed, &policy, &p).unwrap());
        assert!(!a.is_empty());
        assert_eq!(
            a,
            b,
            "{}: a decision before {cut} s changed with the future",
            policy.name()
        );
        // The future really differs: the whole runs do.
        let all_a = cidrcast_sim::decisions(&events, &policy, &p).unwrap();
        let all_b = cidrcast_sim::decisions(&perturbed, &policy, &p).unwrap();
        assert_ne!(all_a.len(), all_b.len(), "{}", policy.name());
    }
}

fn adaptive(experts: &str, extra: &[(&str, &str)]) -> Policy {
    let mut params = vec![("experts".to_string(), experts.to_string())];
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Policy::parse("adaptive", &params).unwrap()
}

#[test]
fn the_adaptive_policy_with_one_candidate_replays_that_candidate() {
    // The real pool holds what its only candidate holds. With the predictive policy, which also
    // releases whatever empty ready shard is highest, it claims and releases the same shards at
    // the same times, so every figure is the candidate's own.
    let events = demo_events();
    let p = Params::fixed(60.0, 64, Some((3000.0, 9000.0)));
    let setting = "predictive quantile=0.9 keep_horizon=1800 target_miss=0.01";
    let alone = replay(&events, &Policy::parse_setting(setting).unwrap(), &p, false).unwrap();
    let followed = replay(&events, &adaptive(setting, &[]), &p, false).unwrap();
    assert!(alone.misses > 0 && alone.shard_releases > 0, "{alone:?}");
    assert_eq!(followed, alone);
    // A pool rule releases one particular shard once its cooldown has passed; the follower, any
    // empty ready shard when the level drops. So which shards fill can differ, and the figures
    // stay within 2%.
    let setting = "warm-target warm_ip_target=8";
    let alone = replay(&events, &Policy::parse_setting(setting).unwrap(), &p, false).unwrap();
    let followed = replay(&events, &adaptive(setting, &[]), &p, false).unwrap();
    let near = |a: f64, b: f64| (a - b).abs() <= 0.02 * b;
    assert!(alone.misses > 0 && alone.shard_releases > 0, "{alone:?}");
    for (f, a) in [
        (followed.misses as f64, alone.misses as f64),
        (followed.mean_idle_addresses, alone.mean_idle_addresses),
        (followed.shard_claims as f64, alone.shard_claims as f64),
    ] {
        assert!(near(f, a), "{followed:?} vs {alone:?}");
    }
}

#[test]
fn the_adaptive_policy_follows_each_subdivisions_cheaper_candidate() {
    use EventKind::*;
    // "steady": five VMs, one replaced every 100 s (a new one before the old goes), for 6 h.
    // "bursty": 40 VMs in 20 s at the start of every hour, gone 10 minutes later.
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(ev(100.0 + i as f64, "steady", Create, &format!("s{i}")));
    }
    for i in 5..216 {
        let t = 100.0 * i as f64;
        events.push(ev(t, "steady", Create, &format!("s{i}")));
        events.push(ev(t + 1.0, "steady", Delete, &format!("s{}", i - 5)));
    }
    for h in 0..6 {
        let t0 = 3600.0 * h as f64 + 1800.0;
        for i in 0..40 {
            events.push(ev(
                t0 + 0.5 * i as f64,
                "bursty",
                Create,
                &format!("b{h}-{i}"),
            ));
            events.push(ev(t0 + 600.0, "bursty", Delete, &format!("b{h}-{i}")));
        }
    }
    events.sort_by(|a, b| a.time.total_cmp(&b.time));
    let p = Params::fixed(60.0, 16, Some((5400.0, 21600.0)));
    let lean = "on-demand release_delay=0";
    let warm = "warm-target warm_ip_target=40";
    // A miss costs as much as one address idle for 2 h.
    let (miss_cost, per_miss) = ("2", 7200.0);
    let run = |policy: &Policy| {
        let r = replay(&events, policy, &p, true).unwrap();
        let per: std::collections::HashMap<String, (u64, f64)> = r
            .per_subdivision
            .clone()
            .unwrap()
            .into_iter()
            .map(|(s, x)| (s, (x.misses, x.mean_idle_addresses)))
            .collect();
        let cost = r.mean_idle_addresses * (21600.0 - 5400.0) + per_miss * r.misses as f64;
        (per, cost)
    };
    let (l, lean_cost) = run(&Policy::parse_setting(lean).unwrap());
    let (w, warm_cost) = run(&Policy::parse_setting(warm).unwrap());
    let (a, adaptive_cost) = run(&adaptive(
        &format!("{lean}; {warm}"),
        &[
            ("miss_cost", miss_cost),
            ("epoch", "300"),
            ("half_life", "3600"),
        ],
    ));
    // The hand-made workload splits the candidates: lean is right for "steady" (no miss, a
    // fraction of the warm pool's idle), the warm pool for "bursty" (the lean rule misses every
    // burst).
    assert_eq!(l["steady"].0, 0, "{l:?}");
    assert!(w["steady"].1 > 3.0 * l["steady"].1, "{w:?} vs {l:?}");
    assert!(
        l["bursty"].0 >= 5 * 40 && w["bursty"].0 <= 40,
        "{l:?} vs {w:?}"
    );
    // The adaptive policy follows lean on "steady" and the warm pool on "bursty" (after the first
    // bursts taught it).
    assert_eq!(a["steady"].0, 0, "{a:?}");
    assert!(a["steady"].1 < 1.5 * l["steady"].1, "{a:?} vs {l:?}");
    assert!(a["bursty"].0 <= 2 * 40, "{a:?}");
    assert!(
        adaptive_cost < lean_cost.min(warm_cost),
        "adaptive {adaptive_cost} vs lean {lean_cost}, warm {warm_cost}"
    );
    // Following both candidates holds the larger of the two: at least the warm pool's idle on
    // "steady", no more misses than it on "bursty".
    let (b, _) = run(&adaptive(
        &format!("{lean}; {warm}"),
        &[("miss_cost", miss_cost), ("follow", "2")],
    ));
    assert!(b["steady"].1 >= w["steady"].1 - 1e-9, "{b:?} vs {w:?}");
    assert!(b["bursty"].0 <= w["bursty"].0, "{b:?} vs {w:?}");
}

#[test]
fn the_adaptive_policy_learns_from_demand_not_from_the_opening_state() {
    use EventKind::*;
    // 200 VMs alive when the trace opens, and nothing else for 10 h. The warm pool has 64
    // addresses ready for them, the lean rule none: the lean rule misses 64 VMs more at the
    // opening, and then holds 64 addresses less for as long as the trace runs.
    let mut events: Vec<VmEvent> = (0..200)
        .map(|i| ev(0.0, "a", Create, &format!("v{i}")))
        .collect();
    events.push(ev(36000.0, "a", Delete, "v0"));
    let p = Params::fixed(60.0, 64, Some((3600.0, 36000.0)));
    let lean = "on-demand release_delay=0";
    let warm = "warm-target warm_ip_target=64";
    let run = |policy: &Policy| replay(&events, policy, &p, false).unwrap();
    let l = run(&Policy::parse_setting(lean).unwrap());
    let w = run(&Policy::parse_setting(warm).unwrap());
    assert!(
        l.mean_idle_addresses + 60.0 < w.mean_idle_addresses,
        "{l:?} vs {w:?}"
    );
    // The routes held when the window opens count towards the largest seen (four /26 shards,
    // one /24 route).
    assert_eq!((l.routes_mean, l.routes_max), (1.0, 1), "{l:?}");
    // Priced at 100 address-hours a miss, the opening's 64 misses would keep the warm pool
    // ahead for days; they are the state the trace opens with, so the lean rule leads from the
    // first epoch.
    let a = run(&adaptive(
        &format!("{warm}; {lean}"),
        &[("miss_cost", "100")],
    ));
    assert_eq!(a.misses, 0, "{a:?}");
    assert!(
        (a.mean_idle_addresses - l.mean_idle_addresses).abs() < 1.0,
        "{a:?} vs {l:?}"
    );
}

#[test]
fn a_standby_shard_serves_a_subdivisions_first_vms() {
    use EventKind::*;
    // "late" gets its first VMs 5,000 s after the trace opens, ten at once, gone at 6,000 s.
    let mut events = vec![ev(0.0, "early", Create, "e0")];
    for i in 0..10 {
        events.push(ev(5000.0, "late", Create, &format!("l{i}")));
        events.push(ev(6000.0, "late", Delete, &format!("l{i}")));
    }
    events.sort_by(|a, b| a.time.total_cmp(&b.time));
    let p = Params::fixed(300.0, 64, None);
    let lean = "on-demand release_delay=0";
    let late = |standby: &str| {
        let policy = adaptive(lean, &[("standby", standby)]);
        let r = replay(&events, &policy, &p, true).unwrap();
        let misses = r
            .per_subdivision
            .unwrap()
            .into_iter()
            .find(|(s, _)| s == "late")
            .unwrap()
            .1
            .misses;
        let log: Vec<Decision> = decisions(&events, &policy, &p)
            .unwrap()
            .into_iter()
            .filter(|d| d.subdivision == "late")
            .collect();
        (misses, log)
    };
    // Without a standby shard the lean rule claims at the first VM, which all ten wait for.
    let (misses, log) = late("0");
    assert_eq!(misses, 10);
    assert!(log[0].claim && log[0].time == 5000.0, "{log:?}");
    // With one, claimed when the replay starts, all ten find addresses; once the VMs have come
    // and gone, the subdivision follows the lean rule and releases it.
    let (misses, log) = late("1");
    assert_eq!(misses, 0);
    assert!(log[0].claim && log[0].time < 0.0, "{log:?}");
    assert_eq!(log.iter().filter(|d| d.claim).count(), 1, "{log:?}");
    assert!(log.iter().any(|d| !d.claim && d.time >= 6000.0), "{log:?}");
    // Two standby shards: two claims before the first VM.
    let (_, log) = late("2");
    assert_eq!(
        log.iter().filter(|d| d.claim && d.time < 5000.0).count(),
        2,
        "{log:?}"
    );
}

/// The predictive policy with its forecast switched off (no samples, no periods): its need is the
/// used count plus `headroom` plus `per_miss` per miss (no decay), so every claim can be computed
/// by hand.
fn plain_predictive(extra: &[(&str, &str)]) -> Policy {
    let mut params: Vec<(String, String)> = [
        ("days", "0"),
        ("recent", "0"),
        ("repeats", "0"),
        ("miss_half_life", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Policy::parse("predictive", &params).unwrap()
}

#[test]
fn adaptive_sizes_take_aligned_buddies_and_trade_idle_against_routes() {
    use cidrcast_sim::decisions;
    use EventKind::*;
    let mut events = vec![ev(1000.0, "a", Create, "v0")];
    events.extend((1..=16).map(|i| ev(1100.0, "a", Create, &format!("v{i}"))));
    let p = Params {
        lead_time: 60.0,
        shard_size: 32,
        min_shard_size: 16,
        max_shard_size: 64,
        window: Some((1000.0, 1300.0)),
    };
    // Ticks every 60 s from 900; a shard is at least need ÷ 2 addresses.
    let policy = plain_predictive(&[("per_miss", "32"), ("route_budget", "2")]);
    // 1000: v0 misses (need 1): a 16 at unit 0 (addresses 0..16), ready at 1060.
    // 1020: need 1 + 32 (the miss) = 33 ≥ 2 × 16.5: size 32; the deficit 17 rounds up to 32, one
    //       32 at the lowest free aligned block: units 2..4 (addresses 32..64), not unit 1.
    // 1100: 16 creates fill the 16 and put one VM in the 32 (hits).
    // 1140: need 17 + 32 = 49 > 48 held: a deficit of 1 is topped up with a 16, which fills the
    //       hole at unit 1 (addresses 16..32). Nothing empty can go (48 left < 49).
    let d = decisions(&events, &policy, &p).unwrap();
    let got: Vec<(f64, usize, u32, bool)> = d
        .iter()
        .map(|x| (x.time, x.shard, x.size, x.claim))
        .collect();
    assert_eq!(
        got,
        vec![
            (1000.0, 0, 16, true),
            (1020.0, 2, 32, true),
            (1140.0, 1, 16, true)
        ]
    );
    let r = replay(&events, &policy, &p, false).unwrap();
    assert_eq!(
        (r.creations, r.misses, r.shard_claims, r.shard_releases),
        (17, 1, 3, 0)
    );
    // Routes: 0/28 alone over [1000, 1020); 0/28 and 32/27 (not buddies) over [1020, 1140); then
    // 0/28 + 16/28 + 32/27 aggregate into one /26 until 1300.
    assert_eq!(r.routes_max, 2);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(
        close(r.routes_mean, (20.0 + 2.0 * 120.0 + 160.0) / 300.0),
        "{}",
        r.routes_mean
    );
    // Held 16, 48, 64 addresses in 1, 2, 3 shards over 20, 120, 160 s; used 1 until 1100, then 17.
    let idle = 15.0 * 20.0 + 47.0 * 80.0 + 31.0 * 40.0 + 47.0 * 160.0;
    assert!(
        close(r.mean_idle_addresses, idle / 300.0),
        "{}",
        r.mean_idle_addresses
    );
    let held = 16.0 * 20.0 + 48.0 * 120.0 + 64.0 * 160.0;
    assert!(
        close(r.mean_shard_size, held / (20.0 + 2.0 * 120.0 + 3.0 * 160.0)),
        "{}",
        r.mean_shard_size
    );

    // A need of 70 with sizes 16 to 64 and one route: one 64, topped up with a 16 (not a 64),
    // aligned after it (units 4..5, addresses 64..80): two routes.
    let big = plain_predictive(&[("headroom", "70"), ("route_budget", "1")]);
    let p = Params { window: None, ..p };
    let d = decisions(&events, &big, &p).unwrap();
    let first: Vec<(f64, usize, u32)> = d
        .iter()
        .take(2)
        .map(|x| (x.time, x.shard, x.size))
        .collect();
    assert_eq!(first, vec![(900.0, 0, 64), (900.0, 4, 16)]);
    assert!(d.iter().all(|x| x.claim));

    // The same trace with fixed sizes keeps the old numbering (shard i = the i-th shard).
    let fixed = Params::fixed(60.0, 16, Some((1000.0, 1300.0)));
    let d = decisions(&events, &policy, &fixed).unwrap();
    assert!(d.iter().all(|x| x.size == 16));
    let shards: Vec<usize> = d.iter().map(|x| x.shard).collect();
    assert_eq!(shards, vec![0, 1, 2, 3]);
    let r = replay(&events, &policy, &fixed, false).unwrap();
    assert_eq!(r.mean_shard_size, 16.0);
}

#[test]
fn bad_shard_sizes_and_route_budgets_are_named() {
    let events = vec![ev(1.0, "a", EventKind::Create, "x")];
    let p = Params {
        lead_time: 60.0,
        shard_size: 64,
        min_shard_size: 128,
        max_shard_size: 256,
        window: None,
    };
    let e = replay(&events, &Policy::Oracle, &p, false).unwrap_err();
    assert!(
        e.to_string().contains("invalid shard sizes 128..256"),
        "{e}"
    );
    let p = Params {
        min_shard_size: 16,
        max_shard_size: 96,
        ..p
    };
    let e = replay(&events, &Policy::Oracle, &p, false).unwrap_err();
    assert!(e.to_string().contains("powers of two"), "{e}");
    let e = Policy::parse("predictive", &[("route_budget".into(), "0".into())]).unwrap_err();
    assert!(e.to_string().contains("route_budget=0"), "{e}");
    let e = Policy::parse("predictive", &[("budget".into(), "2".into())]).unwrap_err();
    assert!(
        e.to_string().contains("claim_from_lead, route_budget"),
        "{e}"
    );
}
