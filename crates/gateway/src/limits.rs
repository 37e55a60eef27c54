//! Rate limits per key and per tenant: requests and estimated tokens per minute, in
//! fixed one-minute windows that start at a key's (or tenant's) first request.
//!
//! Only configured tenants and keys have a window, so the state is bounded by the
//! configuration, not by what clients send.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::RateLimits;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Option<Instant>,
    requests: u64,
    tokens: u64,
}

impl Window {
    const fn new() -> Self {
        Self {
            start: None,
            requests: 0,
            tokens: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        if self
            .start
            .is_none_or(|start| now.duration_since(start) >= WINDOW)
        {
            *self = Self {
                start: Some(now),
                requests: 0,
                tokens: 0,
            };
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The key's requests per minute.
    KeyRequests,
    /// The key's tokens per minute.
    KeyTokens,
    /// The tenant's requests per minute.
    TenantRequests,
    /// The tenant's tokens per minute.
    TenantTokens,
}

impl Limited {
    /// `key` or `tenant`.
    #[must_use]
    pub const fn scope(self) -> &'static str {
        match self {
            Self::KeyRequests | Self::KeyTokens => "key",
            Self::TenantRequests | Self::TenantTokens => "tenant",
        }
    }

    /// `requests` or `tokens`.
    #[must_use]
    pub const fn what(self) -> &'static str {
        match self {
            Self::KeyRequests | Self::TenantRequests => "requests",
            Self::KeyTokens | Self::TenantTokens => "tokens",
        }
    }
}

/// The windows of every configured tenant and key.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<HashMap<(usize, usize), (Window, Window)>>,
    tenants: Mutex<Vec<Window>>,
}

impl RateLimiter {
    /// A limiter for `tenants` tenants.
    #[must_use]
    pub fn new(tenants: usize) -> Self {
        Self {
            state: Mutex::new(HashMap::new()),
            tenants: Mutex::new(vec![Window::new(); tenants]),
        }
    }

    /// Admits one request of `tokens` estimated tokens for key `key` of tenant
    /// `tenant` (indexes into the configuration), or says which limit refuses it.
    /// A refused request consumes nothing.
    ///
    /// # Errors
    /// The [`Limited`] that refused it.
    pub fn admit(
        &self,
        tenant: usize,
        key: usize,
        limits: RateLimits,
        tokens: u64,
    ) -> Result<(), Limited> {
        let now = Instant::now();
        let mut tenants = self.tenants.lock();
        let mut keys = self.state.lock();
        let Some(tenant_window) = tenants.get_mut(tenant) else {
            return Ok(());
        };
        let key_window = &mut keys
            .entry((tenant, key))
            .or_insert((Window::new(), Window::new()))
            .0;
        tenant_window.roll(now);
        key_window.roll(now);
        let over = |limit: u32, used: u64, add: u64| limit != 0 && used + add > u64::from(limit);
        if over(limits.key_requests_per_minute, key_window.requests, 1) {
            return Err(Limited::KeyRequests);
        }
        if over(limits.key_tokens_per_minute, key_window.tokens, tokens) {
            return Err(Limited::KeyTokens);
        }
        if over(limits.tenant_requests_per_minute, tenant_window.requests, 1) {
            return Err(Limited::TenantRequests);
        }
        if over(
            limits.tenant_tokens_per_minute,
            tenant_window.tokens,
            tokens,
        ) {
            return Err(Limited::TenantTokens);
        }
        key_window.requests += 1;
        key_window.tokens += tokens;
        tenant_window.requests += 1;
        tenant_window.tokens += tokens;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_past_the_count_and_consume_nothing_when_refusing() {
        let limiter = RateLimiter::new(1);
        let limits = RateLimits {
            key_requests_per_minute: 2,
            tenant_tokens_per_minute: 100,
            ..RateLimits::default()
        };
        assert_eq!(limiter.admit(0, 0, limits, 10), Ok(()));
        assert_eq!(limiter.admit(0, 0, limits, 95), Err(Limited::TenantTokens));
        assert_eq!(limiter.admit(0, 0, limits, 10), Ok(()));
        assert_eq!(limiter.admit(0, 0, limits, 10), Err(Limited::KeyRequests));
        // Another key of the same tenant has its own request count.
        assert_eq!(limiter.admit(0, 1, limits, 10), Ok(()));
        assert_eq!(limiter.admit(0, 2, limits, 71), Err(Limited::TenantTokens));
    }
}
