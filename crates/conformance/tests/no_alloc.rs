//! `prescribe` and `prescribe_with_trace` never touch the heap, on any path: selection,
//! rejection, request-level refusal, wide arithmetic. A counting global allocator
//! (owned by the `allocation-counter` crate, so no `unsafe` here) proves it.

mod common;

use common::{Rng, catalog, request, scalars, seed};

#[test]
fn prescribe_allocates_nothing() {
    let seed = seed() ^ 0xA110C;
    let mut rng = Rng::new(seed);
    let mut policies = Vec::new();
    while policies.len() < 50 {
        let models = catalog(&mut rng, 64);
        let s = scalars(&mut rng);
        if let Ok(p) =
            calybris_kernel::PolicySnapshot::try_new(s.0, s.1, s.2, s.3, s.4, s.5, models)
        {
            let inputs: Vec<_> = (0..40).map(|k| request(&mut rng, p.models(), k)).collect();
            policies.push((p, inputs));
        }
    }
    let mut sink = 0u64;
    let info = allocation_counter::measure(|| {
        for (policy, inputs) in &policies {
            let view = policy.view();
            for input in inputs {
                let d = policy.prescribe(*input);
                let (t, trace) = policy.prescribe_with_trace(*input);
                let v = view.prescribe(*input);
                let ok = policy.verify_decision(*input, &d).is_ok();
                sink = sink
                    .wrapping_add(
                        d.estimated_cost_microunits
                            ^ t.estimated_cost_microunits
                            ^ v.estimated_cost_microunits,
                    )
                    .wrapping_add(u64::from(trace.eligible_models) + u64::from(ok));
            }
        }
    });
    assert_eq!(
        info.count_total, 0,
        "seed {seed:#x}: prescribe allocated {} times ({} bytes)",
        info.count_total, info.bytes_total
    );
    // Keep the work observable so it cannot be optimised away.
    assert_ne!(sink, 1);
    // And the counter does count: explain allocates one row vector.
    let (policy, inputs) = &policies[0];
    let counted = allocation_counter::measure(|| {
        let e = policy.explain(inputs[0]);
        assert_eq!(e.decision, policy.prescribe(inputs[0]));
    });
    assert!(
        counted.count_total >= 1,
        "the counting allocator saw no allocation in explain"
    );
}
