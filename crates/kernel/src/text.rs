//! Text forms of the decision codes, for people: `Display` writes a few plain
//! words, and `FromStr` reads either those words or the variant's Rust name, so a
//! log line, a config value and a test can all name a reason the way they prefer.
//! The numeric codes (`code`, `from_code`) remain the form that is hashed.

use core::fmt;
use core::str::FromStr;

use crate::types::{KernelAction, KernelReason};

impl KernelAction {
    /// Every action, in code order.
    pub const ALL: [Self; 3] = [Self::ExecuteRequested, Self::Substitute, Self::Reject];

    /// The plain words `Display` writes.
    #[must_use]
    pub const fn words(self) -> &'static str {
        match self {
            Self::ExecuteRequested => "execute the requested candidate",
            Self::Substitute => "substitute another candidate",
            Self::Reject => "reject",
        }
    }

    /// The variant's name, as written in Rust and in the `serde` form.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::ExecuteRequested => "ExecuteRequested",
            Self::Substitute => "Substitute",
            Self::Reject => "Reject",
        }
    }
}

impl KernelReason {
    /// Every reason, in code order.
    pub const ALL: [Self; 13] = [
        Self::RequestedModelMaximizesUtility,
        Self::AlternativeMaximizesUtility,
        Self::RiskHardLimit,
        Self::ConfidenceHardLimit,
        Self::NoEnabledModel,
        Self::QualityConstraint,
        Self::LatencyConstraint,
        Self::CapabilityConstraint,
        Self::ProviderConstraint,
        Self::RegionConstraint,
        Self::BudgetConstraint,
        Self::NonPositiveUtility,
        Self::RiskCeilingConstraint,
    ];

    /// The plain words `Display` writes. For the refusals (codes 103 to 110) they
    /// describe what turned most candidates away.
    #[must_use]
    pub const fn words(self) -> &'static str {
        match self {
            Self::RequestedModelMaximizesUtility => "the requested candidate has the best utility",
            Self::AlternativeMaximizesUtility => "another candidate has a better utility",
            Self::RiskHardLimit => "at or over the hard risk limit",
            Self::ConfidenceHardLimit => "below the minimum confidence",
            Self::NoEnabledModel => "no enabled candidate",
            Self::QualityConstraint => "below the minimum quality",
            Self::LatencyConstraint => "over the latency limit",
            Self::CapabilityConstraint => "missing a required capability",
            Self::ProviderConstraint => "provider not allowed",
            Self::RegionConstraint => "outside the required regions",
            Self::BudgetConstraint => "over the budget",
            Self::NonPositiveUtility => "no positive utility",
            Self::RiskCeilingConstraint => "over the candidates' risk ceiling",
        }
    }

    /// The variant's name, as written in Rust and in the `serde` form.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::RequestedModelMaximizesUtility => "RequestedModelMaximizesUtility",
            Self::AlternativeMaximizesUtility => "AlternativeMaximizesUtility",
            Self::RiskHardLimit => "RiskHardLimit",
            Self::ConfidenceHardLimit => "ConfidenceHardLimit",
            Self::NoEnabledModel => "NoEnabledModel",
            Self::QualityConstraint => "QualityConstraint",
            Self::LatencyConstraint => "LatencyConstraint",
            Self::CapabilityConstraint => "CapabilityConstraint",
            Self::ProviderConstraint => "ProviderConstraint",
            Self::RegionConstraint => "RegionConstraint",
            Self::BudgetConstraint => "BudgetConstraint",
            Self::NonPositiveUtility => "NonPositiveUtility",
            Self::RiskCeilingConstraint => "RiskCeilingConstraint",
        }
    }
}

impl fmt::Display for KernelAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.words())
    }
}

impl fmt::Display for KernelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.words())
    }
}

/// A text that names no [`KernelAction`], by its words or by its variant name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParseActionError;

impl fmt::Display for ParseActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a kernel action (expected its words, such as \"reject\", or its name)")
    }
}

impl core::error::Error for ParseActionError {}

/// A text that names no [`KernelReason`], by its words or by its variant name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParseReasonError;

impl fmt::Display for ParseReasonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "not a kernel reason (expected its words, such as \"over the budget\", or its name)",
        )
    }
}

impl core::error::Error for ParseReasonError {}

impl FromStr for KernelAction {
    type Err = ParseActionError;

    /// Accepts exactly the words of [`KernelAction::words`] or the name of
    /// [`KernelAction::name`]; case and spacing matter.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.words() == text || a.name() == text)
            .ok_or(ParseActionError)
    }
}

impl FromStr for KernelReason {
    type Err = ParseReasonError;

    /// Accepts exactly the words of [`KernelReason::words`] or the name of
    /// [`KernelReason::name`]; case and spacing matter.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.words() == text || r.name() == text)
            .ok_or(ParseReasonError)
    }
}
