//! What the engine needs from its platform (the KMDF shell, or the host platform in tests).

/// The request's cancellation has begun (its cancel routine has run or will run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancelled;

/// A request that can pend: a WDFREQUEST on Windows.
///
/// The engine holds the request while it pends, and completes it exactly once. Cancellation
/// follows WDF's `WdfRequestMarkCancelableEx` / `WdfRequestUnmarkCancelable` rules, which the
/// engine resolves under its lock.
pub trait PendedRequest: Send + 'static {
    /// Identity used to find the request when its cancel routine runs.
    fn token(&self) -> u64;

    /// The output buffer (`METHOD_BUFFERED`: the system buffer, valid at `DISPATCH_LEVEL`).
    fn output(&mut self) -> &mut [u8];

    /// Make the request cancelable. `Err(Cancelled)` if it was already cancelled: the caller must
    /// then complete it with `STATUS_CANCELLED`.
    ///
    /// # Errors
    /// The request was cancelled before it could be made cancelable.
    fn mark_cancelable(&mut self) -> Result<(), Cancelled>;

    /// Make the request not cancelable, to complete it. `Err(Cancelled)` if its cancel routine has
    /// run or will run: the caller must leave it alone (the cancel routine completes it).
    ///
    /// # Errors
    /// Cancellation is in progress.
    fn unmark_cancelable(&mut self) -> Result<(), Cancelled>;

    /// Complete the request with `status`, `information` bytes of output being valid.
    fn complete(self, status: i32, information: usize);
}
