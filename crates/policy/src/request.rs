//! Requests that name models, providers, capabilities and regions: [`request_from_json`].

use calybris_gate::NameMap;
use calybris_kernel::KernelInput;
use serde_json::{Map, Value};

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not JSON of the request's shape.
    #[error("not a valid request: {message}")]
    Json {
        /// serde_json's message.
        message: String,
    },
    /// A field by name and its numeric field are both given.
    #[error("both {by_name} and {numeric} are given: give one")]
    Both {
        /// The field by name.
        by_name: &'static str,
        /// The numeric field.
        numeric: &'static str,
    },
    /// A field by name is used without a name map (a numeric policy).
    #[error("{field} names a {what}, but the policy has no names")]
    NoNames {
        /// The field.
        field: &'static str,
        /// "model", "provider", "capability" or "region".
        what: &'static str,
    },
    /// A name the policy does not know.
    #[error("{field}: the policy has no {what} named {name:?}")]
    UnknownName {
        /// The field.
        field: &'static str,
        /// "model", "provider", "capability" or "region".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A field by name holds neither a string nor an array of strings as it should.
    #[error("{field} must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

fn lookup<T>(
    names: Option<&NameMap>,
    field: &'static str,
    what: &'static str,
    name: &str,
    find: impl Fn(&NameMap, &str) -> Option<T>,
) -> Result<T, RequestError> {
    let names = names.ok_or(RequestError::NoNames { field, what })?;
    find(names, name).ok_or_else(|| RequestError::UnknownName {
        field,
        what,
        name: name.to_owned(),
    })
}

fn take(
    object: &mut Map<String, Value>,
    by_name: &'static str,
    numeric: &'static str,
) -> Result<Option<Value>, RequestError> {
    let value = object.remove(by_name);
    if value.is_some() && object.contains_key(numeric) {
        return Err(RequestError::Both { by_name, numeric });
    }
    Ok(value)
}

fn mask(
    value: Value,
    names: Option<&NameMap>,
    field: &'static str,
    what: &'static str,
    find: impl Fn(&NameMap, &str) -> Option<u8>,
) -> Result<u64, RequestError> {
    let wrong = RequestError::WrongType {
        field,
        expected: "an array of names",
    };
    let Value::Array(items) = value else {
        return Err(wrong);
    };
    let mut mask = 0u64;
    for item in items {
        let Value::String(name) = item else {
            return Err(wrong);
        };
        let bit = lookup(names, field, what, &name, &find)?;
        mask |= 1u64.checked_shl(u32::from(bit)).unwrap_or(0);
    }
    Ok(mask)
}

/// Reads a request in the kernel's JSON form (missing fields take
/// `KernelInput::default()`, unknown ones are refused), where these fields may also be
/// given by name, resolved through `names`:
/// - `requested_model`: a model name, instead of `requested_model_id`;
/// - `allowed_providers`: an array of provider names, instead of
///   `allowed_provider_mask`;
/// - `required_capabilities`: an array of capability names, or the numeric mask;
/// - `required_regions`: an array of region names, instead of `required_region_mask`.
///
/// # Errors
/// A [`RequestError`] naming the field at fault.
pub fn request_from_json(
    bytes: &[u8],
    names: Option<&NameMap>,
) -> Result<KernelInput, RequestError> {
    let json = |error: serde_json::Error| RequestError::Json {
        message: error.to_string(),
    };
    let mut object: Map<String, Value> = serde_json::from_slice(bytes).map_err(json)?;
    if let Some(value) = take(&mut object, "requested_model", "requested_model_id")? {
        let Value::String(name) = value else {
            return Err(RequestError::WrongType {
                field: "requested_model",
                expected: "a model name",
            });
        };
        let id = lookup(names, "requested_model", "model", &name, NameMap::model_id)?;
        object.insert("requested_model_id".into(), Value::from(id));
    }
    if let Some(value) = take(&mut object, "allowed_providers", "allowed_provider_mask")? {
        let provider_bit =
            |map: &NameMap, name: &str| map.provider_id(name).and_then(|id| u8::try_from(id).ok());
        let mask = mask(value, names, "allowed_providers", "provider", provider_bit)?;
        object.insert("allowed_provider_mask".into(), Value::from(mask));
    }
    if let Some(value) = object.remove("required_capabilities") {
        let value = if value.is_array() {
            let mask = mask(
                value,
                names,
                "required_capabilities",
                "capability",
                NameMap::capability_bit,
            )?;
            Value::from(mask)
        } else {
            value
        };
        object.insert("required_capabilities".into(), value);
    }
    if let Some(value) = take(&mut object, "required_regions", "required_region_mask")? {
        let mask = mask(
            value,
            names,
            "required_regions",
            "region",
            NameMap::region_bit,
        )?;
        object.insert("required_region_mask".into(), Value::from(mask));
    }
    serde_json::from_value(Value::Object(object)).map_err(json)
}
