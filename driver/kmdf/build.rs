//! On Windows: configure the KMDF link (`/DRIVER`, `/ENTRY:FxDriverEntry`, the WDK library
//! paths, the `driver_model__driver_type` cfg) from the WDK that wdk-build finds. Elsewhere
//! there is no WDK, and the crate is empty.

#[cfg(windows)]
fn main() -> Result<(), wdk_build::ConfigError> {
    wdk_build::configure_wdk_binary_build()
}

#[cfg(not(windows))]
fn main() {}
