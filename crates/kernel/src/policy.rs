//! Validated policies: the owned [`PolicySnapshot`] (behind `alloc`) and the borrowed,
//! allocation-free [`PolicyView`], with everything that decides against them.

// A replay mismatch carries both whole decisions so the caller can see every field.
// It is returned only off the hot path, and boxing is not an option without `alloc`.
#![allow(clippy::result_large_err)]

/// The decision entry points both policy forms share, written once. Both implement
/// [`Catalog`], which is all these methods use.
macro_rules! decision_methods {
    () => {
        /// Decides `input`. Never panics and never allocates, whatever the input.
        #[must_use]
        pub fn prescribe(&self, input: KernelInput) -> KernelDecision {
            Catalog::run(self, &input, &mut Silent).0
        }

        /// Decides `inputs[i]` into `decisions[i]` for every `i` below the shorter of the
        /// two lengths, and returns that count: the same decisions as [`Self::prescribe`]
        /// one request at a time, for bursts. Never panics and never allocates.
        pub fn prescribe_batch_into(
            &self,
            inputs: &[KernelInput],
            decisions: &mut [KernelDecision],
        ) -> usize {
            let n = inputs.len().min(decisions.len());
            for (input, decision) in inputs.iter().zip(decisions.iter_mut()) {
                *decision = Catalog::run(self, input, &mut Silent).0;
            }
            n
        }

        /// Validates `input`, then decides it.
        ///
        /// # Errors
        /// [`InputError`] when a basis-point field of the request is above 10_000.
        pub fn prescribe_checked(&self, input: KernelInput) -> Result<KernelDecision, InputError> {
            validate_input(&input)?;
            Ok(self.prescribe(input))
        }

        /// Decides `input` and returns the per-gate rejection counts with the decision.
        #[must_use]
        pub fn prescribe_with_trace(&self, input: KernelInput) -> (KernelDecision, DecisionTrace) {
            prescribe_with_trace(self, &input)
        }

        /// The utility of one candidate for `input`, when it passes every gate.
        #[must_use]
        pub fn utility_for_model(&self, input: KernelInput, model_id: u32) -> Option<i64> {
            utility_for_model(self, &input, model_id)
        }

        /// Replays `input` and compares every field with `decision`.
        ///
        /// # Errors
        /// [`DecisionMismatch`] naming the first differing field.
        pub fn verify_decision(
            &self,
            input: KernelInput,
            decision: &KernelDecision,
        ) -> Result<(), DecisionMismatch> {
            compare(&self.prescribe(input), decision)
        }
    };
}

use crate::error::{DecisionField, DecisionMismatch, InputError, PolicyError};
use crate::eval::{
    self, Assessment, Bounds, Candidate, Counting, Observer, PolicyParams, Silent, Tally,
};
use crate::trace::DecisionTrace;
use crate::types::{
    KernelDecision, KernelInput, KernelModel, MAX_BPS, MAX_CATALOG_MODELS, MAX_PROVIDER_ID,
    MAX_RISK_PENALTY_MULTIPLIER_BPS, RESERVED_MODEL_ID,
};

fn check_bps(field: &'static str, value: u16, max: u16) -> Result<(), PolicyError> {
    if value > max {
        return Err(PolicyError::PolicyBpsOutOfRange { field, value, max });
    }
    Ok(())
}

/// Checks the policy-wide scalars.
pub(crate) fn validate_params(p: &PolicyParams) -> Result<(), PolicyError> {
    check_bps("hard_risk_limit_bps", p.hard_risk_limit_bps, MAX_BPS)?;
    check_bps("minimum_confidence_bps", p.minimum_confidence_bps, MAX_BPS)?;
    check_bps(
        "risk_penalty_multiplier_bps",
        p.risk_penalty_multiplier_bps,
        MAX_RISK_PENALTY_MULTIPLIER_BPS,
    )
}

/// Checks one candidate on its own (uniqueness and order are the catalog's business).
fn validate_model(m: &KernelModel, position: usize) -> Result<(), PolicyError> {
    if m.model_id == RESERVED_MODEL_ID {
        return Err(PolicyError::ReservedModelId { position });
    }
    if m.enabled > 1 {
        return Err(PolicyError::InvalidEnabled {
            model_id: m.model_id,
            value: m.enabled,
        });
    }
    for (field, value) in [
        ("quality_bps", m.quality_bps),
        ("risk_ceiling_bps", m.risk_ceiling_bps),
    ] {
        if value > MAX_BPS {
            return Err(PolicyError::ModelBpsOutOfRange {
                model_id: m.model_id,
                field,
                value,
                max: MAX_BPS,
            });
        }
    }
    if m.provider_id > MAX_PROVIDER_ID {
        return Err(PolicyError::ProviderOutOfRange {
            model_id: m.model_id,
            provider_id: m.provider_id,
        });
    }
    Ok(())
}

/// Checks a catalog that is already in ascending `model_id` order: size, every
/// candidate, strict order (which also rules out duplicates) and one enabled candidate.
fn validate_sorted_catalog(models: &[KernelModel]) -> Result<(), PolicyError> {
    if models.is_empty() {
        return Err(PolicyError::EmptyCatalog);
    }
    if models.len() > MAX_CATALOG_MODELS {
        return Err(PolicyError::TooManyModels {
            count: models.len(),
        });
    }
    for (position, m) in models.iter().enumerate() {
        validate_model(m, position)?;
    }
    for (position, pair) in models.windows(2).enumerate() {
        let (a, b) = (pair[0].model_id, pair[1].model_id);
        if a == b {
            return Err(PolicyError::DuplicateModelId { model_id: a });
        }
        if a > b {
            return Err(PolicyError::NotSorted {
                position: position + 1,
            });
        }
    }
    if !models.iter().any(|m| m.enabled == 1) {
        return Err(PolicyError::NoEnabledModel);
    }
    Ok(())
}

/// Checks the three basis-point fields of a request against 10_000.
pub(crate) fn validate_input(input: &KernelInput) -> Result<(), InputError> {
    for (field, value) in [
        ("risk_bps", input.risk_bps),
        ("confidence_bps", input.confidence_bps),
        ("minimum_quality_bps", input.minimum_quality_bps),
    ] {
        if value > MAX_BPS {
            return Err(InputError::BpsOutOfRange {
                field,
                value,
                max: MAX_BPS,
            });
        }
    }
    Ok(())
}

/// Compares a recorded decision with the replayed one, field by field in declaration
/// order, and names the first that differs.
pub(crate) fn compare(
    expected: &KernelDecision,
    recorded: &KernelDecision,
) -> Result<(), DecisionMismatch> {
    // The common case, a decision that replays, is one structural comparison; naming
    // the field is only needed when they differ.
    if expected == recorded {
        return Ok(());
    }
    use DecisionField as F;
    let (e, r) = (expected, recorded);
    let checks = [
        (F::RequestSequence, e.request_sequence == r.request_sequence),
        (F::Action, e.action == r.action),
        (F::Reason, e.reason == r.reason),
        (
            F::SelectedModelId,
            e.selected_model_id == r.selected_model_id,
        ),
        (
            F::SelectedModelIndex,
            e.selected_model_index == r.selected_model_index,
        ),
        (
            F::EstimatedCostMicrounits,
            e.estimated_cost_microunits == r.estimated_cost_microunits,
        ),
        (
            F::ExpectedUtilityMicrounits,
            e.expected_utility_microunits == r.expected_utility_microunits,
        ),
        (
            F::CounterfactualModelId,
            e.counterfactual_model_id == r.counterfactual_model_id,
        ),
        (
            F::CounterfactualUtilityMicrounits,
            e.counterfactual_utility_microunits == r.counterfactual_utility_microunits,
        ),
        (F::EvaluatedModels, e.evaluated_models == r.evaluated_models),
        (F::EligibleModels, e.eligible_models == r.eligible_models),
        (F::PolicyEpoch, e.policy_epoch == r.policy_epoch),
        (F::CatalogEpoch, e.catalog_epoch == r.catalog_epoch),
    ];
    match checks.iter().find(|(_, same)| !same) {
        None => Ok(()),
        Some(&(field, _)) => Err(DecisionMismatch {
            field,
            expected: *e,
            recorded: *r,
        }),
    }
}

/// What the two policy types share, so every decision entry point is written once.
pub(crate) trait Catalog {
    fn params(&self) -> &PolicyParams;
    fn models(&self) -> &[KernelModel];
    fn run<O: Observer>(&self, input: &KernelInput, observer: &mut O) -> (KernelDecision, Tally);
    fn candidate(&self, index: usize) -> Option<Candidate>;
    fn bounds(&self) -> &Bounds;
}

fn trace_of(tally: &Tally) -> DecisionTrace {
    DecisionTrace {
        rejections: tally.histogram(),
        evaluated_models: tally.evaluated,
        eligible_models: tally.eligible,
    }
}

pub(crate) fn prescribe_with_trace<C: Catalog>(
    c: &C,
    input: &KernelInput,
) -> (KernelDecision, DecisionTrace) {
    let (decision, tally) = c.run(input, &mut Counting);
    (decision, trace_of(&tally))
}

pub(crate) fn utility_for_model<C: Catalog>(
    c: &C,
    input: &KernelInput,
    model_id: u32,
) -> Option<i64> {
    let index = c
        .models()
        .binary_search_by_key(&model_id, |m| m.model_id)
        .ok()?;
    let candidate = c.candidate(index)?;
    match eval::assess_one(c.params(), c.bounds(), &candidate, input)? {
        (_, Assessment::Priced { utility, .. }) if utility > 0 => Some(utility),
        _ => None,
    }
}

/// A borrowed, validated policy over a catalog the caller owns, sorted by ascending
/// `model_id`: for callers with no allocator, such as firmware holding its catalog in a
/// `static` array. It decides exactly as a [`PolicySnapshot`] over the same catalog.
///
/// ```
/// use calybris_kernel::{KernelInput, KernelModel, PolicyParams, PolicyView};
///
/// static CATALOG: [KernelModel; 2] = [
///     KernelModel { model_id: 1, provider_id: 0, quality_bps: 9_000, risk_ceiling_bps: 5_000,
///         enabled: 1, p95_latency_ms: 900, capabilities: 1, region_mask: 1,
///         input_cost_microunits_per_million_tokens: 3_000_000,
///         output_cost_microunits_per_million_tokens: 15_000_000 },
///     KernelModel { model_id: 2, provider_id: 1, quality_bps: 7_000, risk_ceiling_bps: 5_000,
///         enabled: 1, p95_latency_ms: 300, capabilities: 1, region_mask: 1,
///         input_cost_microunits_per_million_tokens: 150_000,
///         output_cost_microunits_per_million_tokens: 600_000 },
/// ];
/// let policy = PolicyView::try_new(PolicyParams::default(), &CATALOG)?;
/// let input = KernelInput {
///     requested_model_id: 1, input_tokens: 1_000, output_tokens: 500,
///     business_value_microunits: 50_000, ..KernelInput::default()
/// };
/// let decision = policy.prescribe(input);
/// assert!(decision.is_selection());
/// # Ok::<(), calybris_kernel::PolicyError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PolicyView<'a> {
    params: PolicyParams,
    models: &'a [KernelModel],
    bounds: Bounds,
}

impl<'a> PolicyView<'a> {
    /// Validates `params` and a catalog already sorted by strictly ascending `model_id`.
    ///
    /// # Errors
    /// Every rule of the decision semantics, plus [`PolicyError::NotSorted`] for a
    /// catalog out of order.
    pub fn try_new(params: PolicyParams, models: &'a [KernelModel]) -> Result<Self, PolicyError> {
        validate_params(&params)?;
        validate_sorted_catalog(models)?;
        Ok(Self {
            params,
            models,
            bounds: Bounds::of(models, params.latency_penalty_microunits_per_ms),
        })
    }

    /// The policy-wide scalars.
    #[must_use]
    pub fn params(&self) -> &PolicyParams {
        &self.params
    }

    /// The catalog, in ascending `model_id`.
    #[must_use]
    pub fn models(&self) -> &'a [KernelModel] {
        self.models
    }

    decision_methods!();
}

impl Catalog for PolicyView<'_> {
    fn params(&self) -> &PolicyParams {
        &self.params
    }
    fn models(&self) -> &[KernelModel] {
        self.models
    }
    fn bounds(&self) -> &Bounds {
        &self.bounds
    }
    #[inline(always)]
    fn run<O: Observer>(&self, input: &KernelInput, observer: &mut O) -> (KernelDecision, Tally) {
        let rate = self.params.latency_penalty_microunits_per_ms;
        let candidates = self.models.iter().map(|m| Candidate::compile(m, rate));
        eval::evaluate(
            &self.params,
            &self.bounds,
            candidates,
            self.models,
            input,
            observer,
        )
    }
    fn candidate(&self, index: usize) -> Option<Candidate> {
        let rate = self.params.latency_penalty_microunits_per_ms;
        self.models.get(index).map(|m| Candidate::compile(m, rate))
    }
}

#[cfg(feature = "alloc")]
pub use owned::{PolicyBuilder, PolicySnapshot};

#[cfg(feature = "alloc")]
mod owned {
    use super::{
        Catalog, compare, prescribe_with_trace, utility_for_model, validate_input, validate_params,
        validate_sorted_catalog,
    };
    use crate::error::{DecisionMismatch, InputError, PolicyError};
    use crate::eval::{
        Assessment, Bounds, Candidate, Observer, PolicyParams, Request, Silent, Tally,
    };
    use crate::soa;
    use crate::trace::{
        CandidateExplanation, CandidateVerdict, DecisionTrace, Explanation, GateKind,
    };
    use crate::types::{KernelDecision, KernelInput, KernelModel, MAX_CATALOG_MODELS};
    use alloc::vec::Vec;

    /// A validated, immutable policy: the scalars and a catalog sorted by ascending
    /// `model_id`, compiled once into the layout the decision loop reads fastest.
    ///
    /// Build it with [`PolicySnapshot::try_new`] or [`PolicySnapshot::builder`]; share it
    /// across threads behind an `Arc`. Two catalogs listing the same candidates in
    /// different orders make equal snapshots.
    ///
    /// ```
    /// use calybris_kernel::{KernelAction, KernelInput, KernelModel, PolicySnapshot};
    ///
    /// let model = |model_id, quality_bps, price| KernelModel {
    ///     model_id, provider_id: 0, quality_bps, risk_ceiling_bps: 8_000, enabled: 1,
    ///     p95_latency_ms: 500, capabilities: 0b1, region_mask: 0b1,
    ///     input_cost_microunits_per_million_tokens: price,
    ///     output_cost_microunits_per_million_tokens: price * 4,
    /// };
    /// let policy = PolicySnapshot::try_new(
    ///     1, 1, 9_000, 1_000, 10_000, 2,
    ///     vec![model(7, 9_500, 3_000_000), model(3, 8_000, 200_000)],
    /// )?;
    /// let decision = policy.prescribe(KernelInput {
    ///     requested_model_id: 7,
    ///     input_tokens: 2_000,
    ///     output_tokens: 800,
    ///     business_value_microunits: 40_000,
    ///     risk_bps: 1_500,
    ///     confidence_bps: 9_000,
    ///     ..KernelInput::default()
    /// });
    /// assert_eq!(decision.action, KernelAction::Substitute);
    /// assert_eq!(decision.selected_model_id, 3);
    /// assert!(policy.verify_decision(KernelInput { requested_model_id: 7, input_tokens: 2_000,
    ///     output_tokens: 800, business_value_microunits: 40_000, risk_bps: 1_500,
    ///     confidence_bps: 9_000, ..KernelInput::default() }, &decision).is_ok());
    /// # Ok::<(), calybris_kernel::PolicyError>(())
    /// ```
    #[derive(Clone)]
    pub struct PolicySnapshot {
        params: PolicyParams,
        models: Vec<KernelModel>,
        compiled: Vec<Candidate>,
        /// The structure-of-arrays index of the catalog, for the mask evaluation.
        index: soa::Index,
        bounds: Bounds,
    }

    impl core::fmt::Debug for PolicySnapshot {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("PolicySnapshot")
                .field("params", &self.params)
                .field("models", &self.models)
                .finish_non_exhaustive()
        }
    }

    impl PartialEq for PolicySnapshot {
        fn eq(&self, other: &Self) -> bool {
            // The compiled form and the bounds are derived from these two.
            self.params == other.params && self.models == other.models
        }
    }

    impl Eq for PolicySnapshot {}

    impl PolicySnapshot {
        /// Validates and builds a policy from its six scalars and a catalog in any order.
        ///
        /// # Errors
        /// A [`PolicyError`] naming the first rule broken: empty or oversized catalog,
        /// model id 0, duplicate id, `enabled` not 0 or 1, no enabled candidate, a
        /// basis-point field above its maximum, a provider above 63.
        pub fn try_new(
            policy_epoch: u64,
            catalog_epoch: u64,
            hard_risk_limit_bps: u16,
            minimum_confidence_bps: u16,
            risk_penalty_multiplier_bps: u16,
            latency_penalty_microunits_per_ms: u64,
            models: Vec<KernelModel>,
        ) -> Result<Self, PolicyError> {
            Self::from_params(
                PolicyParams {
                    policy_epoch,
                    catalog_epoch,
                    hard_risk_limit_bps,
                    minimum_confidence_bps,
                    risk_penalty_multiplier_bps,
                    latency_penalty_microunits_per_ms,
                },
                models,
            )
        }

        /// Validates and builds a policy from named scalars and a catalog in any order.
        ///
        /// # Errors
        /// As [`PolicySnapshot::try_new`].
        pub fn from_params(
            params: PolicyParams,
            mut models: Vec<KernelModel>,
        ) -> Result<Self, PolicyError> {
            validate_params(&params)?;
            if models.len() > MAX_CATALOG_MODELS {
                return Err(PolicyError::TooManyModels {
                    count: models.len(),
                });
            }
            // Per-candidate errors name the position as given, so check before sorting.
            for (position, m) in models.iter().enumerate() {
                super::validate_model(m, position)?;
            }
            models.sort_unstable_by_key(|m| m.model_id);
            validate_sorted_catalog(&models)?;
            let rate = params.latency_penalty_microunits_per_ms;
            let compiled: Vec<Candidate> =
                models.iter().map(|m| Candidate::compile(m, rate)).collect();
            let bounds = Bounds::of(&models, rate);
            let index = soa::Index::new(&models, &compiled);
            Ok(Self {
                params,
                models,
                compiled,
                index,
                bounds,
            })
        }

        /// A builder that names every field.
        pub fn builder() -> PolicyBuilder {
            PolicyBuilder::default()
        }

        /// The policy-wide scalars.
        #[must_use]
        pub fn params(&self) -> &PolicyParams {
            &self.params
        }

        /// Version of the decision rules.
        #[must_use]
        pub fn policy_epoch(&self) -> u64 {
            self.params.policy_epoch
        }

        /// Version of the catalog.
        #[must_use]
        pub fn catalog_epoch(&self) -> u64 {
            self.params.catalog_epoch
        }

        /// The catalog, sorted by ascending `model_id`.
        #[must_use]
        pub fn models(&self) -> &[KernelModel] {
            &self.models
        }

        /// A borrowed view of the same policy.
        #[must_use]
        pub fn view(&self) -> super::PolicyView<'_> {
            super::PolicyView {
                params: self.params,
                models: &self.models,
                bounds: self.bounds,
            }
        }

        decision_methods!();

        /// Decides many requests; allocates only the returned vector.
        #[must_use]
        pub fn prescribe_batch(&self, inputs: &[KernelInput]) -> Vec<KernelDecision> {
            inputs.iter().map(|i| self.prescribe(*i)).collect()
        }

        /// Validates every request, then decides them all; nothing is decided when one is
        /// invalid.
        ///
        /// # Errors
        /// The first request's [`InputError`].
        pub fn prescribe_batch_checked(
            &self,
            inputs: &[KernelInput],
        ) -> Result<Vec<KernelDecision>, InputError> {
            inputs.iter().try_for_each(validate_input)?;
            Ok(self.prescribe_batch(inputs))
        }

        /// The decision, its trace, and a verdict for every candidate, all from one
        /// evaluation. The only entry point that allocates (one row per candidate).
        #[must_use]
        pub fn explain(&self, input: KernelInput) -> Explanation {
            let mut rows = Explainer {
                models: &self.models,
                input: &input,
                rows: Vec::with_capacity(self.models.len()),
            };
            let (decision, tally) = self.run(&input, &mut rows);
            Explanation {
                decision,
                trace: DecisionTrace {
                    rejections: tally.histogram(),
                    evaluated_models: tally.evaluated,
                    eligible_models: tally.eligible,
                },
                candidates: rows.rows,
            }
        }
    }

    impl Catalog for PolicySnapshot {
        fn params(&self) -> &PolicyParams {
            &self.params
        }
        fn models(&self) -> &[KernelModel] {
            &self.models
        }
        fn bounds(&self) -> &Bounds {
            &self.bounds
        }
        #[inline(always)]
        fn run<O: Observer>(
            &self,
            input: &KernelInput,
            observer: &mut O,
        ) -> (KernelDecision, Tally) {
            soa::evaluate(
                &self.params,
                &self.bounds,
                &self.index,
                &self.compiled,
                &self.models,
                input,
                observer,
            )
        }
        fn candidate(&self, index: usize) -> Option<Candidate> {
            self.compiled.get(index).copied()
        }
    }

    /// Collects one explanation row per candidate.
    struct Explainer<'a> {
        models: &'a [KernelModel],
        input: &'a KernelInput,
        rows: Vec<CandidateExplanation>,
    }

    impl Explainer<'_> {
        fn gate_detail(&self, m: &KernelModel, c: &Candidate, gate: u32) -> CandidateVerdict {
            use crate::eval::gate as g;
            let i = self.input;
            let (gate, measured, limit) = match gate {
                g::DISABLED => (GateKind::Disabled, u64::from(m.enabled), 1),
                g::QUALITY => (
                    GateKind::Quality,
                    u64::from(m.quality_bps),
                    u64::from(i.minimum_quality_bps),
                ),
                g::LATENCY => (
                    GateKind::Latency,
                    u64::from(m.p95_latency_ms),
                    u64::from(i.max_p95_latency_ms),
                ),
                g::CAPABILITY => (
                    GateKind::Capability,
                    m.capabilities,
                    i.required_capabilities,
                ),
                g::PROVIDER if c.provider_bit == 0 => (
                    GateKind::ProviderUnrepresentable,
                    u64::from(m.provider_id),
                    u64::from(crate::MAX_PROVIDER_ID),
                ),
                g::PROVIDER => (
                    GateKind::ProviderNotAllowed,
                    c.provider_bit,
                    i.allowed_provider_mask,
                ),
                g::REGION => (GateKind::Region, m.region_mask, i.required_region_mask),
                _ => (
                    GateKind::RiskCeiling,
                    u64::from(m.risk_ceiling_bps),
                    u64::from(i.risk_bps),
                ),
            };
            CandidateVerdict::Rejected {
                gate,
                measured,
                limit,
            }
        }
    }

    impl Observer for Explainer<'_> {
        const DETAILED: bool = true;
        const COUNTS: bool = true;
        fn observe(&mut self, index: usize, c: &Candidate, request: &Request, a: &Assessment) {
            let Some(model) = self.models.get(index) else {
                return;
            };
            let verdict = match *a {
                Assessment::Gated(gate) => self.gate_detail(model, c, gate),
                Assessment::OverBudget(cost) => CandidateVerdict::OverBudget {
                    cost_microunits: cost,
                    limit_microunits: self.input.budget_limit_microunits,
                },
                Assessment::Priced {
                    quality_adjusted,
                    cost,
                    utility,
                } => {
                    let terms = request.terms(c, quality_adjusted, cost, utility);
                    if utility > 0 {
                        CandidateVerdict::Eligible(terms)
                    } else {
                        CandidateVerdict::NonPositiveUtility(terms)
                    }
                }
            };
            self.rows.push(CandidateExplanation {
                model_id: model.model_id,
                index: u16::try_from(index).unwrap_or(u16::MAX),
                verdict,
            });
        }
    }

    /// Builds a [`PolicySnapshot`] field by field, for callers who find seven positional
    /// integers error-prone. Unset scalars take [`PolicyParams::default`]'s values.
    #[derive(Clone, Debug, Default)]
    #[must_use]
    pub struct PolicyBuilder {
        params: PolicyParams,
        models: Vec<KernelModel>,
    }

    impl PolicyBuilder {
        /// Sets the policy epoch.
        pub fn policy_epoch(mut self, epoch: u64) -> Self {
            self.params.policy_epoch = epoch;
            self
        }
        /// Sets the catalog epoch.
        pub fn catalog_epoch(mut self, epoch: u64) -> Self {
            self.params.catalog_epoch = epoch;
            self
        }
        /// Sets the request risk at or above which every request is refused.
        pub fn hard_risk_limit_bps(mut self, bps: u16) -> Self {
            self.params.hard_risk_limit_bps = bps;
            self
        }
        /// Sets the request confidence below which every request is refused.
        pub fn minimum_confidence_bps(mut self, bps: u16) -> Self {
            self.params.minimum_confidence_bps = bps;
            self
        }
        /// Sets the multiplier of the request's risk penalty.
        pub fn risk_penalty_multiplier_bps(mut self, bps: u16) -> Self {
            self.params.risk_penalty_multiplier_bps = bps;
            self
        }
        /// Sets the utility charged per millisecond of p95 latency.
        pub fn latency_penalty_microunits_per_ms(mut self, microunits: u64) -> Self {
            self.params.latency_penalty_microunits_per_ms = microunits;
            self
        }
        /// Adds one candidate.
        pub fn model(mut self, model: KernelModel) -> Self {
            self.models.push(model);
            self
        }
        /// Adds candidates.
        pub fn models(mut self, models: impl IntoIterator<Item = KernelModel>) -> Self {
            self.models.extend(models);
            self
        }
        /// Validates and builds the snapshot.
        ///
        /// # Errors
        /// As [`PolicySnapshot::try_new`].
        pub fn build(self) -> Result<PolicySnapshot, PolicyError> {
            PolicySnapshot::from_params(self.params, self.models)
        }
    }

    #[cfg(feature = "serde")]
    mod serde_impl {
        use super::{PolicyParams, PolicySnapshot};
        use crate::types::KernelModel;
        use alloc::vec::Vec;

        /// The wire form of a snapshot: the scalars and the sorted catalog, nothing
        /// derived. Deserializing validates, so no invalid snapshot can be decoded.
        #[derive(serde::Serialize)]
        struct Wire<'a> {
            params: &'a PolicyParams,
            models: &'a [KernelModel],
        }

        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct WireOwned {
            params: PolicyParams,
            models: Vec<KernelModel>,
        }

        impl serde::Serialize for PolicySnapshot {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                Wire {
                    params: &self.params,
                    models: &self.models,
                }
                .serialize(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for PolicySnapshot {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let w = WireOwned::deserialize(d)?;
                PolicySnapshot::from_params(w.params, w.models).map_err(serde::de::Error::custom)
            }
        }
    }
}

/// Replays `input` against `policy` and compares every field with `decision`.
///
/// # Errors
/// [`DecisionMismatch`] naming the first differing field.
#[cfg(feature = "alloc")]
pub fn verify_decision(
    policy: &PolicySnapshot,
    input: KernelInput,
    decision: &KernelDecision,
) -> Result<(), DecisionMismatch> {
    policy.verify_decision(input, decision)
}
