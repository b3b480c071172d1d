//! Opening and closing adapters through the WSK NDK extension (`WskOpenNdkAdapter`).

use alloc::sync::Arc;
use core::any::Any;
use core::ptr::NonNull;

use ndkpi_sys::{NDK_VERSION, NTSTATUS, NtStatus, PWSK_CLIENT, WSK_PROVIDER_NDK_DISPATCH};

use crate::handles::Adapter;

/// The WSK NDK extension of one WSK client registration.
pub struct Wsk {
    dispatch: WSK_PROVIDER_NDK_DISPATCH,
    client: PWSK_CLIENT,
    /// What provides `dispatch` and `client`, kept alive with this `Wsk` (a software provider
    /// in tests; `None` for the kernel's WSK registration, which the driver keeps itself).
    _provider: Option<Arc<dyn Any + Send + Sync>>,
    /// Why there is no NDK extension ([`Wsk::unavailable`]), or success.
    status: NTSTATUS,
}

impl core::fmt::Debug for Wsk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Wsk").finish_non_exhaustive()
    }
}

// SAFETY: the WSK client handle and the NDK dispatch may be used from any thread.
unsafe impl Send for Wsk {}
// SAFETY: as above; `Wsk` has no interior mutability.
unsafe impl Sync for Wsk {}

impl Wsk {
    /// Wrap a dispatch obtained with `WskControlClient(WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH)`.
    ///
    /// # Safety
    /// `dispatch` and `client` come from a captured WSK provider NPI that stays captured (and
    /// the registration alive) for as long as this `Wsk` and every adapter it opened exist.
    pub unsafe fn new(dispatch: WSK_PROVIDER_NDK_DISPATCH, client: PWSK_CLIENT) -> Self {
        Self {
            dispatch,
            client,
            _provider: None,
            status: NtStatus::SUCCESS,
        }
    }

    /// No NDK extension: the driver could not obtain it (`status` says why: the failure of
    /// `WskRegister`, of capturing the provider, or of `WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH`).
    /// Every [`Wsk::open_adapter`] fails with `STATUS_NOT_SUPPORTED`; nothing is ever called.
    #[must_use]
    pub fn unavailable(status: NTSTATUS) -> Self {
        Self {
            dispatch: WSK_PROVIDER_NDK_DISPATCH {
                WskOpenNdkAdapter: None,
                WskCloseNdkAdapter: None,
            },
            client: core::ptr::null_mut(),
            _provider: None,
            status: if status == NtStatus::SUCCESS {
                NtStatus::NOT_SUPPORTED
            } else {
                status
            },
        }
    }

    /// `STATUS_SUCCESS` if this is a WSK NDK extension; for [`Wsk::unavailable`], why there is
    /// none.
    #[must_use]
    pub fn status(&self) -> NTSTATUS {
        self.status
    }

    /// Wrap the dispatch and client of a provider that lives in this process (a software NDK
    /// provider such as softndk), keeping `provider` alive as long as this `Wsk`.
    ///
    /// # Safety
    /// `dispatch` and `client` stay valid for as long as `provider` lives and every adapter
    /// opened through this `Wsk` exists.
    pub unsafe fn with_provider(
        dispatch: WSK_PROVIDER_NDK_DISPATCH,
        client: PWSK_CLIENT,
        provider: Arc<dyn Any + Send + Sync>,
    ) -> Self {
        Self {
            dispatch,
            client,
            _provider: Some(provider),
            status: NtStatus::SUCCESS,
        }
    }

    /// `WskOpenNdkAdapter`. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// The provider's status (e.g. `STATUS_NOT_FOUND`, a bad-version status).
    pub fn open_adapter(&self, if_index: u32, version: NDK_VERSION) -> Result<Adapter, NTSTATUS> {
        let open = self
            .dispatch
            .WskOpenNdkAdapter
            .ok_or(NtStatus::NOT_SUPPORTED)?;
        let mut raw = core::ptr::null_mut();
        // SAFETY: a captured provider NPI (constructor contract); valid out-pointer.
        let status = unsafe { open(self.client, version, if_index, &raw mut raw) };
        match (status, NonNull::new(raw)) {
            // SAFETY: the provider just opened this adapter for us: live, header and table
            // set, owned by nobody else; it is closed only through this `Wsk`.
            (NtStatus::SUCCESS, Some(raw)) => Ok(unsafe { Adapter::from_raw(raw) }),
            (NtStatus::SUCCESS, None) => Err(NtStatus::NOT_SUPPORTED),
            (status, _) => Err(status),
        }
    }

    /// `WskCloseNdkAdapter` (blocking). Every object created from the adapter must be closed
    /// first. `// IRQL: PASSIVE_LEVEL`, never from a callback.
    pub fn close_adapter(&self, adapter: Adapter) {
        if let Some(close) = self.dispatch.WskCloseNdkAdapter {
            let raw = adapter.into_raw();
            // SAFETY: the adapter's only handle was consumed; it came from this client.
            unsafe { close(self.client, raw.as_ptr()) };
        }
    }
}
