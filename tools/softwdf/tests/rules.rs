//! softwdf's verifier rules, each broken on purpose by a small driver of this test (written
//! against the same wdk-sys bindings as the shell): the report must name the rule, so a test of
//! the shell that breaks one fails. The last test is the same driver behaving, with a clean
//! report, so the rules do not fire on correct code.
#![allow(clippy::pedantic, reason = "test scaffolding")]

use std::net::{IpAddr, Ipv4Addr};
use std::ptr::null_mut;
use std::sync::Arc;

use softwdf::{Access, Machine, Rule, System};
use wdk_sys::{
    _EVENT_TYPE, _KWAIT_REASON, _WDF_EXECUTION_LEVEL, _WDF_IO_QUEUE_DISPATCH_TYPE,
    _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, DRIVER_OBJECT, KEVENT, KSPIN_LOCK, NTSTATUS,
    PWDFDEVICE_INIT, ULONG, UNICODE_STRING, WDF_DRIVER_CONFIG, WDF_IO_QUEUE_CONFIG,
    WDF_OBJECT_ATTRIBUTES, WDF_WORKITEM_CONFIG, WDFDEVICE, WDFDRIVER, WDFQUEUE, WDFREQUEST,
    WDFWAITLOCK, WDFWORKITEM, call_unsafe_wdf_function_binding,
};

/// The misbehaviours, by control code (function code << 2, `METHOD_BUFFERED`, any access).
const COMPLETE_TWICE: u32 = 0x800 << 2;
const COMPLETE_WHILE_CANCELABLE: u32 = 0x801 << 2;
const WAIT_UNDER_SPIN_LOCK: u32 = 0x802 << 2;
const LEAK_POOL: u32 = 0x803 << 2;
const LEAK_WAIT_LOCK: u32 = 0x804 << 2;
const TOO_MUCH_INFORMATION: u32 = 0x805 << 2;
const PAGED_POOL_AT_DISPATCH: u32 = 0x807 << 2;
const RETURN_HOLDING_A_SPIN_LOCK: u32 = 0x808 << 2;
const MARK_TWICE: u32 = 0x809 << 2;
const UNMARK_UNMARKED: u32 = 0x80A << 2;
const DELETE_THE_REQUEST: u32 = 0x80B << 2;
const FREE_WHAT_IS_NOT_POOL: u32 = 0x80C << 2;
const RELEASE_A_LOCK_NOT_HELD: u32 = 0x80D << 2;
const FLUSH_FROM_ITSELF: u32 = 0x80E << 2;
const DEREGISTER_UNREGISTERED: u32 = 0x80F << 2;
const BAD_PARAMETERS_SIZE: u32 = 0x810 << 2;
const BEHAVE: u32 = 0x806 << 2;

/// The device's work item (a handle: never dereferenced).
static WORK_ITEM: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The work item's callback flushes the work item: from its own callback, which never returns
/// on Windows (softwdf refuses it).
unsafe extern "C" fn flush_itself(item: WDFWORKITEM) {
    // SAFETY: the live work item this callback runs for: the misuse under test.
    unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemFlush, item) };
}

fn attributes() -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: size_of::<WDF_OBJECT_ATTRIBUTES>() as ULONG,
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

unsafe extern "system" fn driver_entry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: size_of::<WDF_DRIVER_CONFIG>() as ULONG,
        EvtDriverDeviceAdd: Some(device_add),
        ..WDF_DRIVER_CONFIG::default()
    };
    // SAFETY: the kernel's arguments; WDF copies the config.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver,
            registry_path,
            null_mut(),
            &raw mut config,
            null_mut::<WDFDRIVER>()
        )
    }
}

unsafe extern "C" fn device_add(_driver: WDFDRIVER, mut init: PWDFDEVICE_INIT) -> NTSTATUS {
    let mut device: WDFDEVICE = null_mut();
    let mut a = attributes();
    // SAFETY: the init WDF gave this callback.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            &raw mut init,
            &raw mut a,
            &raw mut device
        )
    };
    if status < 0 {
        return status;
    }
    let mut config = WDF_IO_QUEUE_CONFIG {
        Size: size_of::<WDF_IO_QUEUE_CONFIG>() as ULONG,
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: 1,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        EvtIoDeviceControl: Some(device_control),
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    let mut work_config = WDF_WORKITEM_CONFIG {
        Size: size_of::<WDF_WORKITEM_CONFIG>() as ULONG,
        EvtWorkItemFunc: Some(flush_itself),
        AutomaticSerialization: 0,
    };
    let mut wa = attributes();
    wa.ParentObject = device.cast();
    let mut item: WDFWORKITEM = null_mut();
    // SAFETY: the device just created as parent; a valid out-pointer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfWorkItemCreate,
            &raw mut work_config,
            &raw mut wa,
            &raw mut item
        )
    };
    if status < 0 {
        return status;
    }
    WORK_ITEM.store(item.addr(), std::sync::atomic::Ordering::Release);
    let mut qa = attributes();
    qa.ExecutionLevel = _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive;
    let mut queue: WDFQUEUE = null_mut();
    // SAFETY: the device just created.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            &raw mut qa,
            &raw mut queue
        )
    }
}

unsafe extern "C" fn cancel(_request: WDFREQUEST) {}

fn complete(request: WDFREQUEST, information: u64) {
    // SAFETY: a request this driver owns (the test decides how often).
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            0,
            information
        )
    }
}

unsafe extern "C" fn device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    _output_length: usize,
    _input_length: usize,
    code: ULONG,
) {
    match code {
        COMPLETE_TWICE => {
            complete(request, 0);
            complete(request, 0);
        }
        COMPLETE_WHILE_CANCELABLE => {
            // SAFETY: a request this driver owns, with a cancel routine of the right type.
            let _ = unsafe {
                call_unsafe_wdf_function_binding!(WdfRequestMarkCancelableEx, request, Some(cancel))
            };
            complete(request, 0);
        }
        WAIT_UNDER_SPIN_LOCK => {
            let mut event = KEVENT::default();
            let mut lock: KSPIN_LOCK = 0;
            // SAFETY: a local event and lock, live across the calls; the wait is the misuse
            // under test (softwdf refuses it rather than block).
            unsafe {
                wdk_sys::ntddk::KeInitializeEvent(
                    &raw mut event,
                    _EVENT_TYPE::SynchronizationEvent,
                    1,
                );
            }
            // SAFETY: as above.
            let old = unsafe { wdk_sys::ntddk::KeAcquireSpinLockRaiseToDpc(&raw mut lock) };
            // SAFETY: as above.
            let _ = unsafe {
                wdk_sys::ntddk::KeWaitForSingleObject(
                    (&raw mut event).cast(),
                    _KWAIT_REASON::Executive,
                    0,
                    0,
                    null_mut(),
                )
            };
            // SAFETY: held by this thread.
            unsafe { wdk_sys::ntddk::KeReleaseSpinLock(&raw mut lock, old) };
            complete(request, 0);
        }
        LEAK_POOL => {
            // SAFETY: an allocation never freed: the misuse under test.
            let _ =
                unsafe { wdk_sys::ntddk::ExAllocatePool2(0x40, 64, u32::from_le_bytes(*b"Leak")) };
            complete(request, 0);
        }
        LEAK_WAIT_LOCK => {
            let mut lock: WDFWAITLOCK = null_mut();
            // SAFETY: a valid out-pointer; never deleted: the misuse under test.
            let _ = unsafe {
                call_unsafe_wdf_function_binding!(WdfWaitLockCreate, null_mut(), &raw mut lock)
            };
            complete(request, 0);
        }
        TOO_MUCH_INFORMATION => complete(request, 4096),
        FLUSH_FROM_ITSELF => {
            let item: WDFWORKITEM = std::ptr::without_provenance_mut(
                WORK_ITEM.load(std::sync::atomic::Ordering::Acquire),
            );
            // SAFETY: the device's live work item; enqueued, then flushed from outside it (the
            // legal flush, which waits for the callback that breaks the rule).
            unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemEnqueue, item) };
            // SAFETY: as above.
            unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemFlush, item) };
            complete(request, 0);
        }
        DEREGISTER_UNREGISTERED => {
            let mut registration = ndkpi_sys::WSK_REGISTRATION {
                ReservedRegistrationState: 0,
                ReservedRegistrationContext: null_mut(),
                ReservedRegistrationLock: 0,
            };
            // SAFETY: a registration never registered: the misuse under test.
            unsafe { ndkpi_sys::WskDeregister(&raw mut registration) };
            complete(request, 0);
        }
        BAD_PARAMETERS_SIZE => {
            let mut params = wdk_sys::WDF_REQUEST_PARAMETERS::default();
            // SAFETY: a request this driver owns; Size left 0: the misuse under test.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestGetParameters,
                    request,
                    &raw mut params
                );
            }
            complete(request, 0);
        }
        MARK_TWICE => {
            for _ in 0..2 {
                // SAFETY: a request this driver owns; the second mark is the misuse under test.
                let _ = unsafe {
                    call_unsafe_wdf_function_binding!(
                        WdfRequestMarkCancelableEx,
                        request,
                        Some(cancel)
                    )
                };
            }
            // SAFETY: marked above.
            let _ =
                unsafe { call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, request) };
            complete(request, 0);
        }
        UNMARK_UNMARKED => {
            // SAFETY: a request this driver owns, never marked: the misuse under test.
            let _ =
                unsafe { call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, request) };
            complete(request, 0);
        }
        DELETE_THE_REQUEST => {
            // SAFETY: the framework's request, which the driver may not delete: the misuse
            // under test (softwdf refuses it).
            unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, request.cast()) };
            complete(request, 0);
        }
        FREE_WHAT_IS_NOT_POOL => {
            let mut local = [0u8; 16];
            // SAFETY: stack memory, not pool: the misuse under test (softwdf refuses it).
            unsafe { wdk_sys::ntddk::ExFreePool(local.as_mut_ptr().cast()) };
            complete(request, 0);
        }
        RELEASE_A_LOCK_NOT_HELD => {
            let mut lock: KSPIN_LOCK = 0;
            // SAFETY: a lock nobody holds: the misuse under test (softwdf refuses it).
            unsafe { wdk_sys::ntddk::KeReleaseSpinLock(&raw mut lock, 0) };
            complete(request, 0);
        }
        PAGED_POOL_AT_DISPATCH => {
            let mut lock: KSPIN_LOCK = 0;
            // SAFETY: a local lock, released below.
            let old = unsafe { wdk_sys::ntddk::KeAcquireSpinLockRaiseToDpc(&raw mut lock) };
            // SAFETY: paged pool at DISPATCH_LEVEL: the misuse under test (softwdf refuses it).
            let p =
                unsafe { wdk_sys::ntddk::ExAllocatePool2(0x100, 64, u32::from_le_bytes(*b"Page")) };
            assert!(p.is_null(), "refused");
            // SAFETY: held by this thread.
            unsafe { wdk_sys::ntddk::KeReleaseSpinLock(&raw mut lock, old) };
            complete(request, 0);
        }
        RETURN_HOLDING_A_SPIN_LOCK => {
            complete(request, 0);
            // A lock that outlives the callback (leaked on purpose), acquired and kept: the
            // callback returns at DISPATCH_LEVEL.
            static HELD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            // SAFETY: a static lock word (KSPIN_LOCK is a u64), never released: the misuse
            // under test.
            let _old = unsafe { wdk_sys::ntddk::KeAcquireSpinLockRaiseToDpc(HELD.as_ptr()) };
        }
        _ => {
            // Behave: a pool block freed, a wait lock deleted, one completion.
            // SAFETY: freed below.
            let p =
                unsafe { wdk_sys::ntddk::ExAllocatePool2(0x40, 64, u32::from_le_bytes(*b"Good")) };
            // SAFETY: allocated above, freed once.
            unsafe { wdk_sys::ntddk::ExFreePool(p) };
            let mut lock: WDFWAITLOCK = null_mut();
            // SAFETY: a valid out-pointer.
            let _ = unsafe {
                call_unsafe_wdf_function_binding!(WdfWaitLockCreate, null_mut(), &raw mut lock)
            };
            // SAFETY: created above, not held, deleted once.
            unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, lock.cast()) };
            complete(request, 0);
        }
    }
}

/// Boot, load this test's driver, send `code`, unload: the rules the report names.
fn rules_broken_by(code: u32) -> Vec<Rule> {
    let fabric = Arc::new(softndk::Fabric::new(softndk::FabricConfig::default()));
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    fabric.add_host(softndk::HostConfig::new(1, [a]));
    let mut system = System::boot(Machine {
        fabric,
        if_index: 1,
        addresses: vec![a],
        ndk: true,
    });
    // SAFETY: this test's driver; one kernel at a time.
    unsafe { system.load(driver_entry) }.expect("DriverEntry");
    let device = system.add_device().expect("device");
    let h = system.open(&device, Access::ReadWrite).expect("open");
    let done = h.ioctl(code, &[], 16).wait();
    assert!(done.status >= 0, "completed: {done:?}");
    h.close();
    system.remove_device(device).expect("remove");
    system.unload().violations.iter().map(|v| v.rule).collect()
}

#[test]
fn a_request_completed_twice_is_reported() {
    assert!(rules_broken_by(COMPLETE_TWICE).contains(&Rule::RequestCompletedTwice));
}

#[test]
fn a_request_completed_while_still_cancelable_is_reported() {
    assert!(rules_broken_by(COMPLETE_WHILE_CANCELABLE).contains(&Rule::CompletedWhileCancelable));
}

#[test]
fn a_wait_under_a_spin_lock_is_reported() {
    assert!(rules_broken_by(WAIT_UNDER_SPIN_LOCK).contains(&Rule::WaitUnderSpinLock));
}

#[test]
fn pool_never_freed_is_reported_at_unload() {
    assert!(rules_broken_by(LEAK_POOL).contains(&Rule::MemoryLeaked));
}

#[test]
fn a_wait_lock_never_deleted_is_reported_at_unload() {
    assert!(rules_broken_by(LEAK_WAIT_LOCK).contains(&Rule::ObjectLeaked));
}

#[test]
fn more_information_than_the_output_buffer_is_reported() {
    assert!(rules_broken_by(TOO_MUCH_INFORMATION).contains(&Rule::BadCompletion));
}

#[test]
fn a_request_marked_cancelable_twice_is_reported() {
    assert!(rules_broken_by(MARK_TWICE).contains(&Rule::MarkedCancelableTwice));
}

#[test]
fn unmarking_a_request_not_marked_is_reported() {
    assert!(rules_broken_by(UNMARK_UNMARKED).contains(&Rule::UnmarkedNotCancelable));
}

#[test]
fn deleting_the_frameworks_request_is_reported() {
    assert!(rules_broken_by(DELETE_THE_REQUEST).contains(&Rule::IllegalDelete));
}

#[test]
fn freeing_what_is_not_pool_is_reported() {
    assert!(rules_broken_by(FREE_WHAT_IS_NOT_POOL).contains(&Rule::BadFree));
}

#[test]
fn releasing_a_spin_lock_not_held_is_reported() {
    assert!(rules_broken_by(RELEASE_A_LOCK_NOT_HELD).contains(&Rule::SpinLockMisuse));
}

#[test]
fn a_work_item_flushing_itself_is_reported() {
    assert!(rules_broken_by(FLUSH_FROM_ITSELF).contains(&Rule::FlushFromOwnWorkItem));
}

#[test]
fn deregistering_wsk_unregistered_is_reported() {
    assert!(rules_broken_by(DEREGISTER_UNREGISTERED).contains(&Rule::Registration));
}

#[test]
fn a_structure_of_the_wrong_size_is_reported() {
    assert!(rules_broken_by(BAD_PARAMETERS_SIZE).contains(&Rule::BadStructureSize));
}

#[test]
fn paged_pool_at_dispatch_level_is_reported() {
    assert!(rules_broken_by(PAGED_POOL_AT_DISPATCH).contains(&Rule::IrqlTooHigh));
}

#[test]
fn a_callback_returning_with_a_spin_lock_held_is_reported() {
    // On a thread of its own: the thread keeps the lock (and its IRQL) after the callback.
    let rules = std::thread::spawn(|| rules_broken_by(RETURN_HOLDING_A_SPIN_LOCK))
        .join()
        .expect("the thread ends");
    assert!(rules.contains(&Rule::IrqlNotRestored), "{rules:?}");
}

#[test]
fn the_same_driver_behaving_breaks_no_rule() {
    assert_eq!(rules_broken_by(BEHAVE), Vec::<Rule>::new());
}
