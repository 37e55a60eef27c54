//! [`compile`]: a [`PolicyFile`] to the kernel's numeric snapshot and its [`NameMap`].

use std::collections::{BTreeMap, BTreeSet};

use calybris_digest::{SealedPolicy, digest_to_hex};
use calybris_gate::names::{BitName, MAX_BIT_NAMES, MAX_NAME_BYTES, ModelName, ProviderName};
use calybris_gate::{NameMap, names::MAX_PROVIDER_NAMES};
use calybris_kernel::{
    KernelModel, MAX_BPS, MAX_CATALOG_MODELS, PolicyParams, PolicySnapshot, RESERVED_MODEL_ID,
};

use crate::decimal::{Price, microunits_to_decimal};
use crate::error::PolicyFileError;
use crate::file::{FORMAT_VERSION, ModelEntry, PolicyFile};

/// A compiled policy file: the sealed numeric snapshot the kernel decides with, and
/// the names of its ids and bits.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// The kernel's snapshot, with its digest.
    pub policy: SealedPolicy,
    /// The names of its model and provider ids and its capability and region bits.
    pub names: NameMap,
}

impl CompiledPolicy {
    /// The policy digest (`calypol1`) in lowercase hex.
    #[must_use]
    pub fn digest_hex(&self) -> String {
        digest_to_hex(self.policy.digest())
    }

    /// A text table of the models, one line each, in ascending id, with names.
    #[must_use]
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "id".to_owned(),
            "name".to_owned(),
            "provider".to_owned(),
            "quality_bps".to_owned(),
            "risk_ceiling_bps".to_owned(),
            "enabled".to_owned(),
            "p95_ms".to_owned(),
            "input/Mtok".to_owned(),
            "output/Mtok".to_owned(),
            "capabilities".to_owned(),
            "regions".to_owned(),
        ]];
        for m in self.policy.models() {
            let list = |names: Vec<&str>| {
                if names.is_empty() {
                    "-".to_owned()
                } else {
                    names.join(",")
                }
            };
            rows.push([
                m.model_id.to_string(),
                self.names.model_name(m.model_id).unwrap_or("?").to_owned(),
                self.names
                    .provider_name(m.provider_id)
                    .map_or_else(|| m.provider_id.to_string(), str::to_owned),
                m.quality_bps.to_string(),
                m.risk_ceiling_bps.to_string(),
                if m.enabled == 1 { "yes" } else { "no" }.to_owned(),
                m.p95_latency_ms.to_string(),
                microunits_to_decimal(m.input_cost_microunits_per_million_tokens),
                microunits_to_decimal(m.output_cost_microunits_per_million_tokens),
                list(self.names.capability_names(m.capabilities)),
                list(self.names.region_names(m.region_mask)),
            ]);
        }
        let mut widths = [0usize; 11];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for row in &rows {
            let mut line = String::new();
            for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
                if column > 0 {
                    line.push_str("  ");
                }
                // Numbers right-aligned, names left-aligned.
                let numeric = matches!(column, 0 | 3 | 4 | 6 | 7 | 8);
                if numeric {
                    line.push_str(&format!("{cell:>width$}"));
                } else {
                    line.push_str(&format!("{cell:<width$}"));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

impl core::fmt::Display for CompiledPolicy {
    /// The digest line, then [`CompiledPolicy::table`].
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(f, "digest {}", self.digest_hex())?;
        f.write_str(&self.table())
    }
}

fn check_declared(list: &'static str, names: &[String]) -> Result<(), PolicyFileError> {
    let problem = |problem: String| PolicyFileError::BadDeclaration { list, problem };
    if names.len() > MAX_BIT_NAMES {
        return Err(problem(format!(
            "{} names, more than the {MAX_BIT_NAMES} bits of a mask",
            names.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for (position, name) in names.iter().enumerate() {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(problem(format!(
                "entry {position}: a name of {} bytes (1 to {MAX_NAME_BYTES} allowed)",
                name.len()
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(problem(format!("{name:?} is declared twice")));
        }
    }
    Ok(())
}

fn mask_of(
    model: &ModelEntry,
    field: &'static str,
    wanted: &[String],
    declared: &[String],
) -> Result<u64, PolicyFileError> {
    let mut mask = 0u64;
    for name in wanted {
        let bit =
            declared
                .iter()
                .position(|d| d == name)
                .ok_or_else(|| PolicyFileError::Undeclared {
                    model: model.name.clone(),
                    field,
                    name: name.clone(),
                })?;
        // At most 64 declarations (checked before), so the bit fits.
        mask |= 1u64 << bit;
    }
    Ok(mask)
}

fn price(model: &ModelEntry, field: &'static str, price: &Price) -> Result<u64, PolicyFileError> {
    price.microunits().map_err(|error| PolicyFileError::Price {
        model: model.name.clone(),
        field,
        text: price.0.clone(),
        error,
    })
}

fn bps(model: &ModelEntry, field: &'static str, value: u16) -> Result<u16, PolicyFileError> {
    if value > MAX_BPS {
        return Err(PolicyFileError::BpsOutOfRange {
            model: model.name.clone(),
            field,
            value,
            max: MAX_BPS,
        });
    }
    Ok(value)
}

/// The model ids of `models`: their own `id`s when every model sets one, else their
/// positions in the file from 1.
fn model_ids(models: &[ModelEntry]) -> Result<Vec<u32>, PolicyFileError> {
    let explicit = models.first().is_some_and(|m| m.id.is_some());
    let mut ids = Vec::with_capacity(models.len());
    let mut seen = BTreeSet::new();
    for (position, model) in models.iter().enumerate() {
        let id = match (explicit, model.id) {
            (true, Some(id)) => id,
            (false, None) => {
                u32::try_from(position + 1).map_err(|_| PolicyFileError::TooManyModels {
                    count: models.len(),
                    max: MAX_CATALOG_MODELS,
                })?
            }
            _ => {
                return Err(PolicyFileError::MixedIds {
                    model: model.name.clone(),
                });
            }
        };
        if id == RESERVED_MODEL_ID {
            return Err(PolicyFileError::ReservedId {
                model: model.name.clone(),
            });
        }
        if !seen.insert(id) {
            return Err(PolicyFileError::DuplicateId {
                model: model.name.clone(),
                id,
            });
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Compiles a policy file to the kernel's snapshot and the name map.
///
/// Ids and bits are assigned deterministically, from the file alone:
/// - model ids: every model's own `id` when every model sets one; otherwise (no model
///   sets one) the model's position in the file, from 1;
/// - provider ids: by first appearance in the file's model order, from 0 (at most 64);
/// - capability and region bits: the position of the name in the policy's
///   `capabilities` or `regions` list, from 0 (at most 64 each).
///
/// Prices are exact decimals in units per million tokens, turned into microunits with
/// integer arithmetic ([`crate::decimal_to_microunits`]).
///
/// # Errors
/// The first problem found, as a [`PolicyFileError`] naming the model and field.
pub fn compile(file: &PolicyFile) -> Result<CompiledPolicy, PolicyFileError> {
    if file.format_version != FORMAT_VERSION {
        return Err(PolicyFileError::UnsupportedVersion {
            found: file.format_version,
            supported: FORMAT_VERSION,
        });
    }
    if file.models.is_empty() {
        return Err(PolicyFileError::NoModels);
    }
    if file.models.len() > MAX_CATALOG_MODELS {
        return Err(PolicyFileError::TooManyModels {
            count: file.models.len(),
            max: MAX_CATALOG_MODELS,
        });
    }
    check_declared("capabilities", &file.capabilities)?;
    check_declared("regions", &file.regions)?;
    let mut model_names = BTreeSet::new();
    for (position, model) in file.models.iter().enumerate() {
        if model.name.is_empty() || model.name.len() > MAX_NAME_BYTES {
            return Err(PolicyFileError::BadModelName {
                position,
                len_bytes: model.name.len(),
            });
        }
        if !model_names.insert(model.name.as_str()) {
            return Err(PolicyFileError::DuplicateModel {
                model: model.name.clone(),
            });
        }
    }
    let ids = model_ids(&file.models)?;
    let mut providers: BTreeMap<&str, u16> = BTreeMap::new();
    let mut kernel_models = Vec::with_capacity(file.models.len());
    let mut names = NameMap::default();
    for (model, model_id) in file.models.iter().zip(ids) {
        let provider = model.provider.as_str();
        if provider.is_empty() || provider.len() > MAX_NAME_BYTES {
            return Err(PolicyFileError::BadProviderName {
                model: model.name.clone(),
                len_bytes: provider.len(),
            });
        }
        let next = providers.len();
        let provider_id = match providers.get(provider) {
            Some(id) => *id,
            None => {
                let id = u16::try_from(next)
                    .ok()
                    .filter(|_| next < MAX_PROVIDER_NAMES)
                    .ok_or_else(|| PolicyFileError::TooManyProviders {
                        model: model.name.clone(),
                        provider: provider.to_owned(),
                    })?;
                providers.insert(provider, id);
                names.providers.push(ProviderName {
                    provider_id: id,
                    name: provider.to_owned(),
                });
                id
            }
        };
        kernel_models.push(KernelModel {
            model_id,
            provider_id,
            quality_bps: bps(model, "quality_bps", model.quality_bps)?,
            risk_ceiling_bps: bps(model, "risk_ceiling_bps", model.risk_ceiling_bps)?,
            enabled: u8::from(model.enabled),
            p95_latency_ms: model.p95_latency_ms,
            capabilities: mask_of(
                model,
                "capabilities",
                &model.capabilities,
                &file.capabilities,
            )?,
            region_mask: mask_of(model, "regions", &model.regions, &file.regions)?,
            input_cost_microunits_per_million_tokens: price(
                model,
                "input_usd_per_mtok",
                &model.input_usd_per_mtok,
            )?,
            output_cost_microunits_per_million_tokens: price(
                model,
                "output_usd_per_mtok",
                &model.output_usd_per_mtok,
            )?,
        });
        names.models.push(ModelName {
            model_id,
            name: model.name.clone(),
        });
    }
    if !kernel_models.iter().any(|m| m.enabled == 1) {
        return Err(PolicyFileError::NoEnabledModel);
    }
    names.models.sort_unstable_by_key(|m| m.model_id);
    for (list, declared) in [
        (&mut names.capabilities, &file.capabilities),
        (&mut names.regions, &file.regions),
    ] {
        for (bit, name) in declared.iter().enumerate() {
            list.push(BitName {
                // At most 64 declarations (checked above).
                bit: u8::try_from(bit).unwrap_or(u8::MAX),
                name: name.clone(),
            });
        }
    }
    let params = PolicyParams {
        policy_epoch: file.policy_epoch,
        catalog_epoch: file.catalog_epoch,
        hard_risk_limit_bps: file.hard_risk_limit_bps,
        minimum_confidence_bps: file.minimum_confidence_bps,
        risk_penalty_multiplier_bps: file.risk_penalty_multiplier_bps,
        latency_penalty_microunits_per_ms: file.latency_penalty_microunits_per_ms,
    };
    let snapshot =
        PolicySnapshot::from_params(params, kernel_models).map_err(PolicyFileError::Kernel)?;
    names
        .validate_for(&snapshot)
        .map_err(PolicyFileError::Names)?;
    Ok(CompiledPolicy {
        policy: SealedPolicy::new(snapshot),
        names,
    })
}
