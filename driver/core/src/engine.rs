//! The engine: one per driver. It opens handles ([`Owner`]) and keeps a registry of them for
//! what concerns them all (an adapter's removal); everything else a handle, a connection or a
//! listener needs from the engine is in its shared runtime (`crate::runtime`).

use alloc::vec::Vec;

use kalloc::{Arc, Weak};

use ndkdisc_abi::NtStatus;

use crate::error::Error;

use crate::owner::{Access, HandleState, Owner, push_reserved};
use crate::ports::{Lock, Platform};
use crate::runtime::{Config, Runtime};

/// The engine: one per driver.
pub struct Engine<P: Platform> {
    runtime: Arc<Runtime<P>>,
    /// Every open handle, for [`Engine::adapter_removed`]. Grown only outside the lock.
    owners: P::Lock<Vec<Weak<HandleState<P>>>>,
}

impl<P: Platform> Engine<P> {
    /// A new engine over `platform`. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// `STATUS_INSUFFICIENT_RESOURCES` when its shared state cannot be allocated.
    pub fn new(platform: Arc<P>, config: Config) -> Result<Self, NtStatus> {
        Ok(Self {
            owners: platform.lock(Vec::new()),
            runtime: Runtime::new(platform, config).map_err(Error::ntstatus)?,
        })
    }

    /// An adapter went away (NDK disabled on it, or the NIC removed — on Windows the platform
    /// learns it from a plug-and-play or IP-interface notification; on softndk from
    /// `Fabric::on_adapter_removal`). Every connection on interface `if_index` ends with
    /// `Disconnected`/`AdapterRemoved` (`ConnectFailed` if still connecting), status
    /// `STATUS_DEVICE_REMOVED`, and releases its NDK objects so the adapter can close; its id
    /// stays valid until CLOSE. Listeners on it stop accepting and release their adapter.
    /// `// IRQL: PASSIVE_LEVEL`.
    pub fn adapter_removed(&self, if_index: u32) {
        let mut i = 0;
        // One owner at a time (no snapshot: that would allocate under the lock).
        while let Some(next) = self.owners.with(|o| {
            let found = o.get(i).cloned();
            i += 1;
            found
        }) {
            if let Some(owner) = next.upgrade() {
                owner.adapter_removed(if_index);
            }
        }
    }

    /// Wait until the engine has finished the work NDK callbacks still owe it once every handle
    /// is closed: a listener's CLOSE returns before NDK completes the listener's close, and
    /// the adapter is released later, at `PASSIVE_LEVEL`, by deferred work. A platform that
    /// stops deferring (device removal) calls this first, or that adapter would never be
    /// closed. One caller at a time (the platform's removal: it waits on one auto-reset
    /// signal). It returns once the provider has completed every such close; a provider that
    /// never completes one keeps it waiting, as it would keep Windows' removal waiting.
    /// `// IRQL: PASSIVE_LEVEL`; deferral must still run.
    pub fn quiesce(&self) {
        self.runtime.quiesce();
    }

    /// Add a handle to the registry; the list grows outside the lock. `// IRQL: PASSIVE_LEVEL`.
    fn register_owner(&self, owner: &Arc<HandleState<P>>) -> Result<(), Error> {
        let weak = Arc::downgrade(owner);
        loop {
            let pushed = self.owners.with(|o| {
                o.retain(|w| w.strong_count() > 0);
                push_reserved(o, weak.clone())
            });
            if pushed {
                return Ok(());
            }
            // Full: build a bigger list outside the lock, then swap it in if nobody else did.
            let cap = self.owners.with(|o| o.capacity());
            let mut bigger = Vec::new();
            bigger
                .try_reserve_exact(cap.max(4) * 2)
                .map_err(|_| Error::NoResources)?;
            let old = self.owners.with(|o| {
                if o.capacity() != cap {
                    return None;
                }
                // INVARIANT: bigger.capacity() > o.len(): moving them in does not allocate.
                bigger.append(o);
                Some(core::mem::replace(o, core::mem::take(&mut bigger)))
            });
            // The old buffer (or the unused new one) is freed here, outside the lock.
            drop((old, bigger));
        }
    }

    /// The platform.
    pub fn platform(&self) -> &Arc<P> {
        self.runtime.platform()
    }

    /// A new file handle's owner, opened with `access`. It takes one of the engine's
    /// [`Config::max_handles`] places until it is dropped; a failed open takes none.
    /// `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// `STATUS_QUOTA_EXCEEDED` if `max_handles` handles are open;
    /// `STATUS_INSUFFICIENT_RESOURCES` if its records cannot be reserved.
    pub fn open(&self, access: Access) -> Result<Owner<P>, NtStatus> {
        let slot = Runtime::take_handle_slot(&self.runtime).map_err(Error::ntstatus)?;
        // On failure the slot (or the owner holding it) is dropped here, giving the place back.
        let owner = Owner::new(&self.runtime, access, slot).map_err(Error::ntstatus)?;
        self.register_owner(&owner.inner).map_err(Error::ntstatus)?;
        Ok(owner)
    }

    /// Handles open now: owners [`Engine::open`] returned that are not dropped yet (at most
    /// [`Config::max_handles`]).
    pub fn open_handles(&self) -> usize {
        self.runtime.open_handles()
    }
}
