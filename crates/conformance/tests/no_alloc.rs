//! `prescribe`, `prescribe_with_trace`, `verify_decision` and `prescribe_batch_into`
//! never touch the heap, on any path: selection, rejection, request-level refusal, wide
//! arithmetic. A counting global allocator
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

#[test]
fn prescribe_batch_into_allocates_nothing() {
    let seed = seed() ^ 0xBA7C4;
    let mut rng = Rng::new(seed);
    let mut policies = Vec::new();
    // Catalogs of at most these sizes (random lengths), so both the scalar loop (at
    // most 12 candidates) and the index, with one block or several, take batches.
    for size in [3u64, 12, 40, 64, 200, 300] {
        // Random catalogs are sometimes invalid; a valid one comes within a few tries.
        for _ in 0..1_000 {
            let models = catalog(&mut rng, size);
            let s = scalars(&mut rng);
            if let Ok(p) =
                calybris_kernel::PolicySnapshot::try_new(s.0, s.1, s.2, s.3, s.4, s.5, models)
            {
                let inputs: Vec<_> = (0..97).map(|k| request(&mut rng, p.models(), k)).collect();
                policies.push((p, inputs));
                break;
            }
        }
    }
    assert_eq!(
        policies.len(),
        6,
        "seed {seed:#x}: every size built a policy"
    );
    // Buffers are made before counting; the batch writes into them. One longer than the
    // inputs, so the count returned is the shorter length, and one shorter, the other.
    let longest = policies.iter().map(|(_, i)| i.len()).max().unwrap_or(0);
    let fill = policies[0].0.prescribe(policies[0].1[0]);
    let mut owned = vec![fill; longest + 1];
    let mut borrowed = vec![fill; longest + 1];
    let mut short = vec![fill; 5];
    let mut counts = Vec::with_capacity(policies.len() * 3);
    let mut mismatches = 0usize;
    let info = allocation_counter::measure(|| {
        for (policy, inputs) in &policies {
            let view = policy.view();
            counts.push(policy.prescribe_batch_into(inputs, &mut owned));
            counts.push(view.prescribe_batch_into(inputs, &mut borrowed));
            counts.push(policy.prescribe_batch_into(inputs, &mut short));
            for (k, input) in inputs.iter().enumerate() {
                let one = policy.prescribe(*input);
                mismatches += usize::from(owned[k] != one)
                    + usize::from(borrowed[k] != one)
                    + usize::from(k < short.len() && short[k] != one);
            }
        }
    });
    assert_eq!(
        info.count_total, 0,
        "seed {seed:#x}: prescribe_batch_into allocated {} times ({} bytes)",
        info.count_total, info.bytes_total
    );
    assert_eq!(mismatches, 0, "seed {seed:#x}: a batch decision differs");
    let expected: Vec<usize> = policies
        .iter()
        .flat_map(|(_, i)| [i.len(), i.len(), 5])
        .collect();
    assert_eq!(counts, expected, "seed {seed:#x}: decided counts");
}
