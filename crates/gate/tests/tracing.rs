//! The `tracing` feature: one `calybris.gate.decide` span per decision, with the
//! decision's fields recorded on it.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use calybris_gate::{Gate, GateConfig, GateError};
use common::{TempDir, policy, request};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Default)]
struct Seen {
    next_id: AtomicU64,
    decide_spans: AtomicU64,
    /// The fields given when each decide span was created.
    created_fields: Mutex<Vec<String>>,
    /// The fields recorded on the spans later.
    recorded_fields: Mutex<Vec<String>>,
}

struct Recorder(Arc<Seen>);

struct FieldNames<'a>(&'a mut Vec<String>);

impl Visit for FieldNames<'_> {
    fn record_debug(&mut self, field: &Field, _value: &dyn std::fmt::Debug) {
        self.0.push(field.name().to_owned());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _metadata: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        if span.metadata().name() == "calybris.gate.decide" {
            self.0.decide_spans.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut fields) = self.0.created_fields.lock() {
                span.record(&mut FieldNames(&mut fields));
            }
        }
        Id::from_u64(self.0.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _span: &Id, values: &Record<'_>) {
        if let Ok(mut fields) = self.0.recorded_fields.lock() {
            values.record(&mut FieldNames(&mut fields));
        }
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, _event: &Event<'_>) {}

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

fn count(fields: &[String], name: &str) -> usize {
    fields.iter().filter(|field| *field == name).count()
}

#[test]
fn every_decision_gets_one_span_with_its_fields() -> Result<(), GateError> {
    const DECISIONS: u64 = 3;
    let dir = TempDir::new("tracing");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("acme", 1_000_000))?;
    let seen = Arc::new(Seen::default());
    tracing::subscriber::with_default(Recorder(Arc::clone(&seen)), || -> Result<(), GateError> {
        for sequence in 0..DECISIONS {
            let admission = gate.decide("acme", request(sequence, 1))?;
            gate.abandon(admission)?;
        }
        Ok(())
    })?;
    gate.close()?;
    assert_eq!(seen.decide_spans.load(Ordering::Relaxed), DECISIONS);
    let created = seen
        .created_fields
        .lock()
        .map(|fields| fields.clone())
        .unwrap_or_default();
    for name in ["tenant", "request_sequence"] {
        assert_eq!(
            count(&created, name),
            DECISIONS as usize,
            "field {name} given once per decision: {created:?}"
        );
    }
    let recorded = seen
        .recorded_fields
        .lock()
        .map(|fields| fields.clone())
        .unwrap_or_default();
    for name in [
        "action",
        "reason",
        "cost_microunits",
        "budget",
        "log_sequence",
    ] {
        assert_eq!(
            count(&recorded, name),
            DECISIONS as usize,
            "field {name} recorded once per decision: {recorded:?}"
        );
    }
    Ok(())
}
