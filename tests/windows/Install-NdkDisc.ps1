<#
.SYNOPSIS
Install ndkdisc.sys from a driver package and create its root-enumerated device (Root\NdkDisc).

.DESCRIPTION
Steps, each printed as it runs:
  1. checks elevation and that test signing is on (Enable-TestSigning.ps1);
  2. imports the package's test certificate (WDRLocalTestCert.cer) into LocalMachine\Root and
     LocalMachine\TrustedPublisher, so the catalog and the .sys verify;
  3. `pnputil /add-driver ndkdisc.inf /install` (adds the package to the driver store);
  4. creates the root device if there is none: `devgen /add /bus ROOT /hardwareid Root\NdkDisc`
     (WDK tool) or `devcon install ndkdisc.inf Root\NdkDisc`; PnP then loads the driver;
  5. waits (polling, -StartTimeoutSeconds) until the device started and the ndkdisc service
     runs;
  6. with -EnableVerifier: `verifier /standard /driver ndkdisc.sys` (needs a reboot).

.PARAMETER PackagePath
Folder with ndkdisc.sys, ndkdisc.inf, ndkdisc.cat and WDRLocalTestCert.cer. Default: the
folder above this script (the CI artifact puts the scripts in <package>\scripts).

.PARAMETER Tool
devgen or devcon, to create the device. Default: devgen if found, else devcon.

.PARAMETER StartTimeoutSeconds
How long to wait for the device to start and the service to run. Default: 60.

.PARAMETER EnableVerifier
Enable Driver Verifier's standard checks for ndkdisc.sys (takes effect after a reboot).
#>
[CmdletBinding()]
param(
    [string] $PackagePath = (Split-Path -Parent $PSScriptRoot),
    [ValidateSet('devgen', 'devcon', '')] [string] $Tool = '',
    [ValidateRange(1, 3600)] [int] $StartTimeoutSeconds = 60,
    [switch] $EnableVerifier
)

. "$PSScriptRoot\Common.ps1"
Assert-Administrator

$inf = Join-Path $PackagePath 'ndkdisc.inf'
foreach ($file in @($inf, (Join-Path $PackagePath $DriverFile), (Join-Path $PackagePath 'ndkdisc.cat'))) {
    if (-not (Test-Path $file)) { throw "missing $file - is -PackagePath the ndkdisc_package folder?" }
}
if (-not (Test-TestSigning)) {
    throw 'Test signing is off: run Enable-TestSigning.ps1 and reboot first.'
}

$certificate = Join-Path $PackagePath $TestCertificate
if (Test-Path $certificate) {
    foreach ($store in 'Root', 'TrustedPublisher') {
        Write-Host "Importing $TestCertificate into Cert:\LocalMachine\$store"
        Import-Certificate -FilePath $certificate -CertStoreLocation "Cert:\LocalMachine\$store" | Out-Null
    }
} else {
    Write-Warning "$certificate not found: assuming the signing certificate is already trusted."
}

# 259 (ERROR_NO_MORE_ITEMS): the package was added to the driver store but no present device
# matched it - what a first install always sees, as the root device is created below. 3010:
# a reboot is needed to finish.
Invoke-Native pnputil @('/add-driver', $inf, '/install') -AllowedExitCodes @(0, 259, 3010) | Out-Null

if (-not (Get-NdkDiscDevice)) {
    if (-not $Tool) { $Tool = if (Find-WdkTool devgen) { 'devgen' } else { 'devcon' } }
    $exe = Find-WdkTool $Tool
    if (-not $exe) { throw "$Tool.exe not found (install the WDK, or put it on PATH)" }
    if ($Tool -eq 'devgen') {
        Invoke-Native $exe @('/add', '/bus', 'ROOT', '/hardwareid', $HardwareId) | Out-Null
    } else {
        Invoke-Native $exe @('install', $inf, $HardwareId) -AllowedExitCodes @(0, 1) | Out-Null
    }
} else {
    Write-Host "A $HardwareId device exists already; pnputil updated its driver."
}

# PnP installs and starts the device asynchronously: poll until it is started and the service
# runs, or the timeout passes.
$deadline = (Get-Date).AddSeconds($StartTimeoutSeconds)
do {
    $devices = @(Get-NdkDiscDevice)
    $started = [bool]($devices | Where-Object Status -eq 'OK')
    $service = Get-Service $ServiceName -ErrorAction SilentlyContinue
    $running = $service -and $service.Status -eq 'Running'
    if ($started -and $running) { break }
    Start-Sleep -Milliseconds 500
} while ((Get-Date) -lt $deadline)
$devices | Format-Table -AutoSize Status, Class, FriendlyName, InstanceId | Out-Host
if (-not $started) {
    throw "no started $HardwareId device after $StartTimeoutSeconds s; see Device Manager, setupapi.dev.log and the System event log"
}
if (-not $running) {
    throw "the $ServiceName service is not running after $StartTimeoutSeconds s"
}
Write-Host "ndkdisc is installed and running (\\.\NdkDisc)."

if ($EnableVerifier) {
    Invoke-Native verifier @('/standard', '/driver', $DriverFile) -AllowedExitCodes @(0, 2) | Out-Null
    Write-Host 'Driver Verifier is set for ndkdisc.sys from the next boot: reboot, then run Invoke-NdkDiscScenarios.ps1.'
}
