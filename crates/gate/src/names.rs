//! The names of a policy's numbers: which model a `model_id` is, which provider a
//! `provider_id`, which capability or region a bit. A [`NameMap`] is built by
//! `calybris-policy` when it compiles a human policy file, recorded in the gate log
//! right after the policy it names ([`crate::record::PolicyNames`]), and used by every
//! later report to speak in names.
//!
//! The type is plain data with `serde` (no file format of its own), so the gate does not
//! depend on any parser of policy files.

use calybris_kernel::{MAX_CATALOG_MODELS, MAX_PROVIDER_ID, PolicySnapshot};
use serde::{Deserialize, Serialize};

/// The longest name a [`NameMap`] may hold, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// The most capability (or region) names: one per bit of a `u64` mask.
pub const MAX_BIT_NAMES: usize = 64;

/// The most bytes all the names of a [`NameMap`] may hold together, so that its
/// record stays well under the log's largest payload.
pub const MAX_NAME_MAP_BYTES: usize = 8 << 20;

/// The most provider names: one per bit of the kernel's `u64` provider mask.
pub const MAX_PROVIDER_NAMES: usize = MAX_PROVIDER_ID as usize + 1;

/// One model's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelName {
    /// The kernel's `model_id`.
    pub model_id: u32,
    /// The model's name.
    pub name: String,
}

/// One provider's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderName {
    /// The kernel's `provider_id` (`0..=63`).
    pub provider_id: u16,
    /// The provider's name.
    pub name: String,
}

/// One bit's name (a capability or a region).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitName {
    /// The bit's position in the mask (`0..=63`).
    pub bit: u8,
    /// The bit's name.
    pub name: String,
}

/// The names of a policy's numeric ids and bits. Every list is in ascending id (or
/// bit) order, with unique ids and unique names ([`NameMap::validate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameMap {
    /// Model names, ascending by `model_id`.
    pub models: Vec<ModelName>,
    /// Provider names, ascending by `provider_id`.
    pub providers: Vec<ProviderName>,
    /// Capability names, ascending by bit.
    pub capabilities: Vec<BitName>,
    /// Region names, ascending by bit.
    pub regions: Vec<BitName>,
}

/// Why a [`NameMap`] is not valid (on its own or for a policy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameMapError {
    /// A list holds more entries than its ids allow.
    #[error("{list}: {count} names, more than the {max} allowed")]
    TooMany {
        /// "models", "providers", "capabilities" or "regions".
        list: &'static str,
        /// How many it holds.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A name is empty or longer than [`MAX_NAME_BYTES`].
    #[error("{list}: a name of {len_bytes} bytes (1 to {MAX_NAME_BYTES} allowed)")]
    BadName {
        /// The list.
        list: &'static str,
        /// The name's length.
        len_bytes: usize,
    },
    /// The ids of a list are not strictly ascending (or repeat).
    #[error("{list}: id {id} is not above the one before it")]
    NotAscending {
        /// The list.
        list: &'static str,
        /// The id out of order.
        id: u64,
    },
    /// Two entries of a list have the same name.
    #[error("{list}: the name {name:?} is given twice")]
    DuplicateName {
        /// The list.
        list: &'static str,
        /// The name.
        name: String,
    },
    /// The names together hold more than [`MAX_NAME_MAP_BYTES`].
    #[error("the names hold {total_bytes} bytes, more than the {MAX_NAME_MAP_BYTES} allowed")]
    TooLarge {
        /// Their total length.
        total_bytes: usize,
    },
    /// An id is out of its range (a bit above 63, a provider above 63, model 0).
    #[error("{list}: id {id} is out of range")]
    IdOutOfRange {
        /// The list.
        list: &'static str,
        /// The id.
        id: u64,
    },
    /// A model id named is not in the policy's catalog.
    #[error("model {model_id} ({name:?}) is not in the policy")]
    UnknownModel {
        /// The id.
        model_id: u32,
        /// Its name.
        name: String,
    },
    /// A provider id named belongs to no model of the policy.
    #[error("provider {provider_id} ({name:?}) has no model in the policy")]
    UnknownProvider {
        /// The id.
        provider_id: u16,
        /// Its name.
        name: String,
    },
}

fn check_list<'a>(
    list: &'static str,
    max: usize,
    entries: impl ExactSizeIterator<Item = (u64, &'a str)>,
) -> Result<(), NameMapError> {
    if entries.len() > max {
        return Err(NameMapError::TooMany {
            list,
            count: entries.len(),
            max,
        });
    }
    let mut names = std::collections::BTreeSet::new();
    let mut previous: Option<u64> = None;
    for (id, name) in entries {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(NameMapError::BadName {
                list,
                len_bytes: name.len(),
            });
        }
        if previous.is_some_and(|before| id <= before) {
            return Err(NameMapError::NotAscending { list, id });
        }
        previous = Some(id);
        if !names.insert(name) {
            return Err(NameMapError::DuplicateName {
                list,
                name: name.to_owned(),
            });
        }
    }
    Ok(())
}

fn bit_name(bits: &[BitName], mask: u64) -> Vec<&str> {
    bits.iter()
        .filter(|b| b.bit < 64 && mask & (1u64 << b.bit) != 0)
        .map(|b| b.name.as_str())
        .collect()
}

impl NameMap {
    /// Checks the map on its own: bounded counts and total size, names of 1 to [`MAX_NAME_BYTES`]
    /// bytes, ids strictly ascending and in range, no name twice in a list.
    ///
    /// # Errors
    /// The first [`NameMapError`] found.
    pub fn validate(&self) -> Result<(), NameMapError> {
        let total_bytes = self
            .models
            .iter()
            .map(|m| m.name.len())
            .chain(self.providers.iter().map(|p| p.name.len()))
            .chain(self.capabilities.iter().map(|b| b.name.len()))
            .chain(self.regions.iter().map(|b| b.name.len()))
            .fold(0usize, usize::saturating_add);
        if total_bytes > MAX_NAME_MAP_BYTES {
            return Err(NameMapError::TooLarge { total_bytes });
        }
        check_list(
            "models",
            MAX_CATALOG_MODELS,
            self.models
                .iter()
                .map(|m| (u64::from(m.model_id), m.name.as_str())),
        )?;
        if let Some(first) = self.models.first()
            && first.model_id == calybris_kernel::RESERVED_MODEL_ID
        {
            return Err(NameMapError::IdOutOfRange {
                list: "models",
                id: 0,
            });
        }
        check_list(
            "providers",
            MAX_PROVIDER_NAMES,
            self.providers
                .iter()
                .map(|p| (u64::from(p.provider_id), p.name.as_str())),
        )?;
        if let Some(last) = self.providers.last()
            && last.provider_id > MAX_PROVIDER_ID
        {
            return Err(NameMapError::IdOutOfRange {
                list: "providers",
                id: u64::from(last.provider_id),
            });
        }
        for (list, bits) in [
            ("capabilities", &self.capabilities),
            ("regions", &self.regions),
        ] {
            check_list(
                list,
                MAX_BIT_NAMES,
                bits.iter().map(|b| (u64::from(b.bit), b.name.as_str())),
            )?;
            if let Some(last) = bits.last()
                && last.bit >= 64
            {
                return Err(NameMapError::IdOutOfRange {
                    list,
                    id: u64::from(last.bit),
                });
            }
        }
        Ok(())
    }

    /// Checks the map on its own ([`validate`](Self::validate)) and against `policy`:
    /// every model it names is in the catalog, and every provider it names has a
    /// model in the catalog.
    ///
    /// # Errors
    /// The first [`NameMapError`] found.
    pub fn validate_for(&self, policy: &PolicySnapshot) -> Result<(), NameMapError> {
        self.validate()?;
        let catalog = policy.models();
        for model in &self.models {
            if catalog
                .binary_search_by_key(&model.model_id, |m| m.model_id)
                .is_err()
            {
                return Err(NameMapError::UnknownModel {
                    model_id: model.model_id,
                    name: model.name.clone(),
                });
            }
        }
        for provider in &self.providers {
            if !catalog
                .iter()
                .any(|m| m.provider_id == provider.provider_id)
            {
                return Err(NameMapError::UnknownProvider {
                    provider_id: provider.provider_id,
                    name: provider.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The name of model `model_id`, if it has one.
    #[must_use]
    pub fn model_name(&self, model_id: u32) -> Option<&str> {
        self.models
            .binary_search_by_key(&model_id, |m| m.model_id)
            .ok()
            .and_then(|at| self.models.get(at))
            .map(|m| m.name.as_str())
    }

    /// The id of the model named `name`.
    #[must_use]
    pub fn model_id(&self, name: &str) -> Option<u32> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.model_id)
    }

    /// The name of provider `provider_id`, if it has one.
    #[must_use]
    pub fn provider_name(&self, provider_id: u16) -> Option<&str> {
        self.providers
            .iter()
            .find(|p| p.provider_id == provider_id)
            .map(|p| p.name.as_str())
    }

    /// The id of the provider named `name`.
    #[must_use]
    pub fn provider_id(&self, name: &str) -> Option<u16> {
        self.providers
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.provider_id)
    }

    /// The bit of the capability named `name`.
    #[must_use]
    pub fn capability_bit(&self, name: &str) -> Option<u8> {
        self.capabilities
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.bit)
    }

    /// The bit of the region named `name`.
    #[must_use]
    pub fn region_bit(&self, name: &str) -> Option<u8> {
        self.regions.iter().find(|b| b.name == name).map(|b| b.bit)
    }

    /// The names of the capability bits set in `mask`, ascending by bit (bits without
    /// a name are left out).
    #[must_use]
    pub fn capability_names(&self, mask: u64) -> Vec<&str> {
        bit_name(&self.capabilities, mask)
    }

    /// The names of the region bits set in `mask`, ascending by bit (bits without a
    /// name are left out).
    #[must_use]
    pub fn region_names(&self, mask: u64) -> Vec<&str> {
        bit_name(&self.regions, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> NameMap {
        NameMap {
            models: vec![
                ModelName {
                    model_id: 1,
                    name: "a".into(),
                },
                ModelName {
                    model_id: 2,
                    name: "b".into(),
                },
            ],
            providers: vec![ProviderName {
                provider_id: 0,
                name: "p".into(),
            }],
            capabilities: vec![
                BitName {
                    bit: 0,
                    name: "vision".into(),
                },
                BitName {
                    bit: 1,
                    name: "tools".into(),
                },
            ],
            regions: Vec::new(),
        }
    }

    #[test]
    fn a_valid_map_answers_both_ways() {
        let names = map();
        assert_eq!(names.validate(), Ok(()));
        assert_eq!(names.model_name(2), Some("b"));
        assert_eq!(names.model_id("a"), Some(1));
        assert_eq!(names.model_name(3), None);
        assert_eq!(names.capability_names(0b11), vec!["vision", "tools"]);
        assert_eq!(names.capability_bit("tools"), Some(1));
    }

    #[test]
    fn duplicates_order_and_range_are_refused() {
        let mut names = map();
        names.models[1].name = "a".into();
        assert!(matches!(
            names.validate(),
            Err(NameMapError::DuplicateName { list: "models", .. })
        ));
        let mut names = map();
        names.models[1].model_id = 1;
        assert!(matches!(
            names.validate(),
            Err(NameMapError::NotAscending { .. })
        ));
        let mut names = map();
        names.capabilities[1].bit = 64;
        assert!(matches!(
            names.validate(),
            Err(NameMapError::IdOutOfRange { .. })
        ));
        let mut names = map();
        names.models[0].model_id = 0;
        assert!(matches!(
            names.validate(),
            Err(NameMapError::IdOutOfRange { .. })
        ));
        let mut names = map();
        names.regions.push(BitName {
            bit: 3,
            name: String::new(),
        });
        assert!(matches!(
            names.validate(),
            Err(NameMapError::BadName { .. })
        ));
    }
}
