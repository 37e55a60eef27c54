//! Golden vectors of the gate record layout: one record of every kind, encoded as it is
//! written into a frame's payload, pinned in `tests/data/records.golden` (one line per
//! record: its kind, then its payload in lowercase hex). The file changes only on
//! purpose: regenerate it with `CALYBRIS_REGENERATE_GOLDEN=1 cargo test -p
//! calybris-gate --test golden`, and say why in the commit.

mod common;

use calybris_digest::{SealedPolicy, tenant_number};
use calybris_gate::names::{BitName, ModelName, NameMap, ProviderName};
use calybris_gate::record::{
    AdaptiveNote, AdaptivePolicy, AdaptiveRegime, AdaptiveSetup, AdaptiveTier, BookSnapshot,
    EngineSnapshot, LimitsChanged, LogHeader, OpenHold, OutcomeRecord, PolicyNames,
    PromotionRecord, SettlementRecord, SnapshotTenant, TenantCreated, TopUp,
};
use calybris_gate::windows::{
    AlertFiredRecord, BudgetDefined, BudgetScope, BudgetTopUp, BudgetWindow, NodeWindowBooks,
    ScopeHold, SnapshotBudgetNode, SnapshotHeldNode, SnapshotNodeHolds, WindowResetRecord,
};
use calybris_gate::{
    AttemptSkip, BudgetOutcome, ExecutionAttempt, ExecutionRecord, ExecutionStatus,
    GATE_FORMAT_VERSION, GateRecord, LeaseRefusal, SettlementKind,
};
use calybris_kernel::PolicySnapshot;
use calybris_wal::{DecisionMeta, PolicyRecord};

fn records() -> Vec<GateRecord> {
    let policy = SealedPolicy::new(
        PolicySnapshot::builder()
            .model(common::model(1, 9_000, 2_000_000))
            .build()
            .expect("valid policy"),
    );
    let input = common::request(7, 1);
    let decision = policy.prescribe(input);
    let audit = common::audit(
        input,
        decision,
        *policy.digest(),
        DecisionMeta {
            recorded_at_unix_ms: 1_764_620_000_000,
            tenant_id: tenant_number("acme"),
            request_id: *b"golden-request-1",
        },
    );
    vec![
        GateRecord::Header(LogHeader {
            format_version: GATE_FORMAT_VERSION,
        }),
        GateRecord::Policy(PolicyRecord {
            policy_digest: *policy.digest(),
            policy: policy.clone(),
        }),
        GateRecord::TenantCreated(TenantCreated {
            tenant: "acme".into(),
            initial_microunits: 1_000_000,
        }),
        GateRecord::TopUp(TopUp {
            tenant: "acme".into(),
            amount_microunits: 250_000,
        }),
        GateRecord::LimitsChanged(LimitsChanged {
            tenant: "acme".into(),
            max_reserved_microunits: Some(500_000),
            max_open_reservations: None,
        }),
        {
            let mut record = common::gate_decision(
                audit,
                "acme",
                BudgetOutcome::Reserved {
                    amount_microunits: decision.estimated_cost_microunits,
                },
            );
            if let GateRecord::Decision(ref mut d) = record {
                d.scopes = vec![
                    ScopeHold {
                        node: "acme-org".into(),
                        window: 20_789,
                    },
                    ScopeHold {
                        node: "model-large".into(),
                        window: 0,
                    },
                ];
            }
            record
        },
        common::gate_decision(
            audit,
            "acme",
            BudgetOutcome::Insufficient {
                remaining_microunits: -1,
            },
        ),
        {
            let mut record = common::gate_decision(
                audit,
                "acme",
                BudgetOutcome::Insufficient {
                    remaining_microunits: -1,
                },
            );
            if let GateRecord::Decision(ref mut d) = record {
                d.holdout = Some(calybris_gate::HoldoutNote {
                    share_bps: 2_000,
                    key_fingerprint: [0x33; 8],
                    held_out: true,
                    baseline_digest: *policy.digest(),
                });
                d.shadow = Some(calybris_gate::ShadowNote {
                    candidate_digest: calybris_digest::Digest([0x44; 32]),
                    action: calybris_kernel::KernelAction::Substitute,
                    selected_model_id: 2,
                    reason: calybris_kernel::KernelReason::AlternativeMaximizesUtility,
                    decision_digest: calybris_digest::Digest([0x55; 32]),
                });
                d.adaptive = Some(AdaptiveNote {
                    regime: 1,
                    tier: 2,
                    static_tier: 0,
                    explored: true,
                    draw: Some(1_234),
                    propensity_numerator: 7,
                    propensity_denominator: 17,
                    floor_suggested_bps: 7_200,
                    client_floor_bps: Some(8_000),
                    client_floor_overrode: true,
                    floor_bps: 8_000,
                    requested_model_id: 3,
                    label: Some("coding".into()),
                    features: vec![12, -3],
                    state_digest: calybris_digest::Digest([0x33; 32]),
                });
            }
            record
        },
        GateRecord::Settlement(SettlementRecord {
            decision_sequence: 5,
            tenant: "acme".into(),
            kind: SettlementKind::CommitWithOverrun {
                actual_microunits: 12_345,
            },
        }),
        GateRecord::Settlement(SettlementRecord {
            decision_sequence: 5,
            tenant: "acme".into(),
            kind: SettlementKind::ReleasedAtReopen,
        }),
        GateRecord::Settlement(SettlementRecord {
            decision_sequence: 5,
            tenant: "acme".into(),
            kind: SettlementKind::CommittedAtReopen,
        }),
        GateRecord::Outcome(OutcomeRecord {
            decision_sequence: 5,
            decision_digest: audit.decision_digest,
            reward_microunits: -42,
            success: true,
            latency_ms: 321,
            detail: b"provider=a".to_vec(),
        }),
        GateRecord::BookSnapshot(BookSnapshot {
            format_version: GATE_FORMAT_VERSION,
            policy_digest: *policy.digest(),
            tenants: vec![SnapshotTenant {
                tenant: "acme".into(),
                initial_microunits: 1_250_000,
                remaining_microunits: 1_237_655,
                reserved_microunits: 0,
                committed_microunits: 12_345,
                max_reserved_microunits: Some(500_000),
                max_open_reservations: None,
            }],
            open: vec![
                OpenHold {
                    decision_sequence: 9,
                    tenant_index: 0,
                    held_microunits: 0,
                },
                OpenHold {
                    decision_sequence: 11,
                    tenant_index: 0,
                    held_microunits: 700,
                },
            ],
            budget_nodes: vec![SnapshotBudgetNode {
                definition: BudgetDefined {
                    node: "acme-team".into(),
                    parent: None,
                    scope: BudgetScope::Chain,
                    limit_microunits: 5_000,
                    window: BudgetWindow::Daily {
                        utc_offset_minutes: 60,
                    },
                    start_window: 20_423,
                    alert_thresholds_bps: vec![5_000, 10_000],
                },
                windows: vec![
                    NodeWindowBooks {
                        window: 20_422,
                        granted_microunits: 5_000,
                        remaining_microunits: 0,
                        reserved_microunits: 700,
                        committed_microunits: 2_600,
                        expired_microunits: 1_700,
                        overrun_microunits: 0,
                        open_holds: 1,
                        fired_mask: 1,
                    },
                    NodeWindowBooks {
                        window: 20_423,
                        granted_microunits: 5_000,
                        remaining_microunits: 5_000,
                        ..NodeWindowBooks::default()
                    },
                ],
            }],
            budget_holds: vec![SnapshotNodeHolds {
                decision_sequence: 11,
                held_microunits: 700,
                nodes: vec![SnapshotHeldNode {
                    node_index: 0,
                    window: 20_422,
                }],
            }],
        }),
        GateRecord::PolicyNames(PolicyNames {
            policy_digest: *policy.digest(),
            names: NameMap {
                models: vec![ModelName {
                    model_id: 1,
                    name: "gpt-4o-mini-2024-07-18".into(),
                }],
                providers: vec![ProviderName {
                    provider_id: 0,
                    name: "openai".into(),
                }],
                capabilities: vec![BitName {
                    bit: 0,
                    name: "vision".into(),
                }],
                regions: vec![BitName {
                    bit: 1,
                    name: "eu".into(),
                }],
            },
        }),
        GateRecord::Execution(ExecutionRecord {
            decision_sequence: 5,
            decision_digest: audit.decision_digest,
            provider: "local".into(),
            model: "llama-3.1-8b".into(),
            request_sha256: [0x11; 32],
            response_sha256: [0x22; 32],
            latency_ms: 87,
            status: ExecutionStatus::Served,
            http_status: 200,
            input_tokens: 120,
            output_tokens: 40,
            cost_microunits: 3_210,
            attempts: vec![
                ExecutionAttempt {
                    provider: "ollama".into(),
                    model: "llama-3.2-1b".into(),
                    http_status: 0,
                    success: false,
                    latency_ms: 3,
                    skipped: Some(AttemptSkip::LocalSlotBusy),
                },
                ExecutionAttempt {
                    provider: "openai".into(),
                    model: "gpt-4o-mini".into(),
                    http_status: 503,
                    success: false,
                    latency_ms: 12,
                    skipped: None,
                },
                ExecutionAttempt {
                    provider: "local".into(),
                    model: "llama-3.1-8b".into(),
                    http_status: 200,
                    success: true,
                    latency_ms: 70,
                    skipped: None,
                },
            ],
        }),
        GateRecord::LeaseRefused(LeaseRefusal {
            tenant: "acme".into(),
            request_id: [7; 16],
            recorded_at_unix_ms: 1_700_000_000_000,
            lease_id: "lease-1".into(),
            issued_by: "ops".into(),
            reason: "expired".into(),
        }),
        GateRecord::Promotion(PromotionRecord {
            policy_digest: *policy.digest(),
            previous_policy_digest: calybris_digest::Digest([0x11; 32]),
            report_digest: calybris_digest::Digest([0x22; 32]),
            rollback: false,
        }),
        GateRecord::BudgetDefined(BudgetDefined {
            node: "acme-team".into(),
            parent: Some("acme-org".into()),
            scope: BudgetScope::Chain,
            limit_microunits: 5_000_000,
            window: BudgetWindow::Monthly {
                utc_offset_minutes: -300,
            },
            start_window: 683,
            alert_thresholds_bps: vec![5_000, 8_000, 10_000],
        }),
        GateRecord::BudgetDefined(BudgetDefined {
            node: "model-large".into(),
            parent: None,
            scope: BudgetScope::Model("large".into()),
            limit_microunits: 9_000_000,
            window: BudgetWindow::Fixed {
                duration_ms: 3_600_000,
                origin_unix_ms: 1_764_547_200_000,
            },
            start_window: 0,
            alert_thresholds_bps: Vec::new(),
        }),
        GateRecord::BudgetDefined(BudgetDefined {
            node: "acme-berlin".into(),
            parent: None,
            scope: BudgetScope::Tag("eu".into()),
            limit_microunits: 1_000_000,
            window: BudgetWindow::ZonedDaily {
                zone: calybris_budget::ZoneRule::parse_posix("CET-1CEST,M3.5.0,M10.5.0/3")
                    .expect("a valid rule"),
            },
            start_window: 20_541,
            alert_thresholds_bps: vec![10_000],
        }),
        GateRecord::WindowReset(WindowResetRecord {
            node: "acme-team".into(),
            from_window: 683,
            to_window: 684,
            expired_microunits: 1_250_000,
            recorded_at_unix_ms: 1_796_085_000_000,
        }),
        GateRecord::AlertFired(AlertFiredRecord {
            node: "acme-team".into(),
            window: 684,
            threshold_bps: 8_000,
            committed_microunits: 4_000_000,
            granted_microunits: 5_000_000,
        }),
        GateRecord::BudgetTopUp(BudgetTopUp {
            node: "acme-team".into(),
            window: 684,
            amount_microunits: 1_000_000,
        }),
        GateRecord::Checkpoint(calybris_gate::CheckpointRecord {
            tree_size: 16,
            root: [0x33; 32],
            note: "example.com/gate\n16\nMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=\n\n\u{2014} example.com/gate AAAAAA==\n".into(),
            proof: vec![[0x44; 32], [0x55; 32]],
        }),
        GateRecord::Staged(calybris_gate::record::StagedPolicy {
            role: calybris_gate::StageRole::Shadow,
            policy: calybris_wal::PolicyRecord {
                policy_digest: *policy.digest(),
                policy: policy.clone(),
            },
        }),
        GateRecord::Unstaged(calybris_gate::record::UnstagedPolicy {
            role: calybris_gate::StageRole::Baseline,
            policy_digest: *policy.digest(),
        }),
        GateRecord::EngineSnapshot(EngineSnapshot {
            updates: 1_000,
            refused_updates: 1,
            pending: 3,
            state_digest: calybris_digest::Digest([0x44; 32]),
            layout_digest: calybris_digest::Digest([0x66; 32]),
        }),
        GateRecord::AdaptiveSetup(adaptive_setup()),
        GateRecord::EngineState(calybris_gate::adaptive::EngineState {
            setup: adaptive_setup(),
            updates: 3,
            refused_updates: 0,
            version: 3,
            state_digest: calybris_digest::Digest([0x77; 32]),
            regimes: vec![calybris_gate::adaptive::EngineRegimeState {
                floor_bps: 7_230,
                welford: vec![
                    calybris_gate::adaptive::WelfordState {
                        count: 3,
                        sum: -12,
                        spread: 96,
                    },
                    calybris_gate::adaptive::WelfordState {
                        count: 3,
                        sum: 1 << 40,
                        spread: 0,
                    },
                ],
                posteriors: vec![(2, 2), (4, 2)],
                table_updates: 3,
                refreshes: vec![
                    calybris_gate::adaptive::TableRefresh {
                        refreshed_at: 2,
                        alpha: 2,
                        beta: 2,
                    },
                    calybris_gate::adaptive::TableRefresh {
                        refreshed_at: 3,
                        alpha: 4,
                        beta: 2,
                    },
                ],
            }],
            pending: 1,
        }),
        GateRecord::EnginePending(calybris_gate::adaptive::EnginePending {
            decisions: vec![calybris_gate::adaptive::PendingDecision {
                sequence: 41,
                regime: 0,
                tier: 1,
                features: vec![-3, 7],
                business_value_microunits: 2_000_000,
            }],
        }),
    ]
}

/// The adaptive setup of the golden records (record 21, restated in record 22).
fn adaptive_setup() -> AdaptiveSetup {
    AdaptiveSetup {
        format_version: 1,
        regimes: vec![AdaptiveRegime {
            label: "coding".into(),
            domain: 2,
            custom_floor_bps: 0,
        }],
        features: 2,
        floor_min_bps: 5_000,
        floor_max_bps: 9_900,
        step_bps: 10,
        min_observations: 8,
        fallback: 0,
        priors: vec![(1, 1), (3, 2)],
        policy: AdaptivePolicy::Thompson { redraws: 15 },
        exploration_bps: 10_000,
        key: [0x55; 32],
        tiers: vec![
            AdaptiveTier {
                floor_bps: 0,
                requested_model_id: None,
            },
            AdaptiveTier {
                floor_bps: 8_500,
                requested_model_id: Some(4),
            },
        ],
        static_tier: 0,
        snapshot_every_updates: 10_000,
        feedback: calybris_gate::adaptive::AdaptiveFeedback::Reward {
            cost_bound_bps: 5_746,
            observations: 2,
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_record_kind_encodes_as_pinned_and_decodes_back() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/records.golden");
    let mut lines = String::new();
    for record in records() {
        let bytes = postcard::to_allocvec(&record).expect("encodes");
        let decoded: GateRecord =
            calybris_wal::decode_record(&bytes).expect("decodes with nothing left over");
        assert_eq!(decoded, record);
        lines.push_str(&format!("{} {}\n", record.kind(), hex(&bytes)));
    }
    if std::env::var_os("CALYBRIS_REGENERATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("data dir");
        std::fs::write(&path, &lines).expect("write golden");
    }
    let pinned = std::fs::read_to_string(&path)
        .expect("tests/data/records.golden (regenerate with CALYBRIS_REGENERATE_GOLDEN=1)");
    for (number, (ours, golden)) in lines.lines().zip(pinned.lines()).enumerate() {
        assert_eq!(ours, golden, "record {number} of the golden file differs");
    }
    assert_eq!(lines.lines().count(), pinned.lines().count());
}

#[test]
fn the_first_byte_of_a_payload_is_the_record_code() {
    let codes: Vec<u8> = records()
        .iter()
        .map(|record| postcard::to_allocvec(record).expect("encodes")[0])
        .collect();
    // header, policy, tenant, top-up, limits, decision x3, settlement x3, outcome, snapshot,
    // policy names, execution, lease refusal, promotion, budget defined x3, window reset,
    // alert fired, budget top-up, checkpoint, staged, unstaged, engine snapshot,
    // adaptive setup, engine state, engine pending
    assert_eq!(
        codes,
        [
            2, 0, 3, 4, 5, 1, 1, 1, 6, 6, 6, 7, 8, 9, 10, 11, 12, 13, 13, 13, 14, 15, 16, 17, 18,
            19, 20, 21, 22, 23
        ]
    );
}

#[test]
fn a_policy_record_is_byte_for_byte_the_audited_logs() {
    let record = &records()[1];
    let GateRecord::Policy(policy) = record else {
        panic!("the second golden record is a policy");
    };
    let ours = postcard::to_allocvec(record).expect("encodes");
    let audited =
        postcard::to_allocvec(&calybris_wal::AuditRecord::Policy(policy.clone())).expect("encodes");
    assert_eq!(ours, audited);
}
