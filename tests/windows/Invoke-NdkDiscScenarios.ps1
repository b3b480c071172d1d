<#
.SYNOPSIS
Run the ndkctl scenarios against the installed driver, on one host (NIC loopback) or two, and
collect the results into one folder and a zip.

.DESCRIPTION
Modes:
  Loopback  one host whose RDMA NIC supports loopback (NDK_ADAPTER_FLAG_LOOPBACK_CONNECTIONS_
            SUPPORTED): a listener and a connector on -LocalAddress.
  Server    the passive side of a two-host run: listens on -LocalAddress:-Port.
  Client    the active side: connects to -PeerAddress:-Port. Start the Server first.

Every run records: the Driver Verifier state (`verifier /querysettings`; -RequireVerifier
fails the run if ndkdisc.sys is not verified), the device and service state, `ndkctl info`,
`ndkctl adapters`, each scenario's output and exit code, and the System event log since the
start (driver, PnP and bugcheck entries). Results go to -ResultsPath (a timestamped folder by
default) and are zipped beside it. The script exits non-zero if a scenario failed.

The scenario command lines are in $Scenarios below, in one place: they follow ndkctl's
commands (DESIGN.md section 6: info, adapters, listen, connect with pre-posted receives and
event waits). Keep them in step with `ndkctl --help`.

.EXAMPLE
.\Invoke-NdkDiscScenarios.ps1 -Mode Loopback -LocalAddress 192.168.10.5 -RequireVerifier

.EXAMPLE
# host A                                   # host B
.\Invoke-NdkDiscScenarios.ps1 -Mode Server -LocalAddress 192.168.10.5
                                           .\Invoke-NdkDiscScenarios.ps1 -Mode Client -PeerAddress 192.168.10.5
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [ValidateSet('Loopback', 'Server', 'Client')] [string] $Mode,
    [string] $LocalAddress,
    [string] $PeerAddress,
    [ValidateRange(1, 65535)] [int] $Port = 54321,
    [string] $NdkCtl = (Join-Path (Split-Path -Parent $PSScriptRoot) 'ndkctl.exe'),
    [string] $ResultsPath = (Join-Path (Get-Location) ("ndkdisc-results-{0}-{1}" -f $env:COMPUTERNAME, (Get-Date -Format 'yyyyMMdd-HHmmss'))),
    [ValidateRange(1, 3600)] [int] $TimeoutSeconds = 120,
    [switch] $RequireVerifier
)

. "$PSScriptRoot\Common.ps1"
Assert-Administrator

if (($Mode -in @('Loopback', 'Server')) -and -not $LocalAddress) { throw "-LocalAddress is required for $Mode" }
if ($Mode -eq 'Client' -and -not $PeerAddress) { throw '-PeerAddress is required for Client' }
if ($Mode -eq 'Loopback') { $PeerAddress = $LocalAddress }
if (-not (Test-Path $NdkCtl)) { throw "ndkctl not found at $NdkCtl (pass -NdkCtl)" }

$start = Get-Date
New-Item -ItemType Directory -Force -Path $ResultsPath | Out-Null
Write-Host "Results: $ResultsPath"

# name -> ndkctl arguments. Receives are pre-posted so that a peer disconnect is seen with work
# still outstanding (ndkdisc never flushes on a peer disconnect).
$Scenarios = [ordered]@{
    'listen-accept-wait'     = @('listen', '--address', "${LocalAddress}:$Port", '--accept', '1', '--post-receives', '16', '--wait-events', '--timeout', "$TimeoutSeconds")
    'connect-then-peer-left' = @('connect', '--address', "${PeerAddress}:$Port", '--post-receives', '16', '--wait-events', '--timeout', "$TimeoutSeconds")
    'connect-local-close'    = @('connect', '--address', "${PeerAddress}:$Port", '--post-receives', '16', '--close-after', '1')
}
$plan = switch ($Mode) {
    'Server' { @('listen-accept-wait') }
    'Client' { @('connect-then-peer-left', 'connect-local-close') }
    'Loopback' { @('listen-accept-wait', 'connect-then-peer-left') }
}

function Save-Output([string] $Name, [scriptblock] $Body) {
    $file = Join-Path $ResultsPath "$Name.txt"
    try { & $Body *>&1 | Out-File -Encoding utf8 $file } catch { "$_" | Out-File -Append -Encoding utf8 $file }
}

# Environment.
Save-Output 'verifier' { & verifier /querysettings }
$verified = (Get-Content (Join-Path $ResultsPath 'verifier.txt') -Raw) -match '(?i)ndkdisc\.sys'
if ($RequireVerifier -and -not $verified) {
    throw 'Driver Verifier is not enabled for ndkdisc.sys (Install-NdkDisc.ps1 -EnableVerifier, then reboot)'
}
Save-Output 'device' { Get-NdkDiscDevice | Format-List *; Get-Service $ServiceName | Format-List * }
Save-Output 'ndkctl-info' { & $NdkCtl info }
Save-Output 'ndkctl-adapters' { & $NdkCtl adapters }

# Scenarios. In Loopback mode the listener runs as a background process while the connector runs.
$results = [System.Collections.Generic.List[object]]::new()
function Start-Scenario([string] $Name) {
    $out = Join-Path $ResultsPath "$Name.out.txt"
    $err = Join-Path $ResultsPath "$Name.err.txt"
    Write-Host "> ndkctl $($Scenarios[$Name] -join ' ')"
    $process = Start-Process -FilePath $NdkCtl -ArgumentList $Scenarios[$Name] -NoNewWindow -PassThru `
        -RedirectStandardOutput $out -RedirectStandardError $err
    $null = $process.Handle   # keeps ExitCode readable after exit (a Start-Process -PassThru quirk)
    $process
}
function Wait-Scenario([string] $Name, $Process) {
    $finished = $Process.WaitForExit($TimeoutSeconds * 1000 + 10000)
    if (-not $finished) { $Process.Kill(); $code = 'timeout' } else { $code = $Process.ExitCode }
    $results.Add([pscustomobject]@{ Scenario = $Name; ExitCode = $code; Passed = ($code -eq 0) })
}

if ($Mode -eq 'Loopback') {
    $listener = Start-Scenario 'listen-accept-wait'
    Start-Sleep -Seconds 2
    Wait-Scenario 'connect-then-peer-left' (Start-Scenario 'connect-then-peer-left')
    Wait-Scenario 'listen-accept-wait' $listener
} else {
    foreach ($name in $plan) { Wait-Scenario $name (Start-Scenario $name) }
}

# What the system logged meanwhile: driver, PnP, verifier and bugcheck entries.
Save-Output 'system-events' {
    Get-WinEvent -FilterHashtable @{ LogName = 'System'; StartTime = $start } -ErrorAction SilentlyContinue |
        Where-Object { $_.Level -le 3 -or $_.ProviderName -match '(?i)ndkdisc|kernel-pnp|bugcheck|verifier' } |
        Format-List TimeCreated, ProviderName, Id, LevelDisplayName, Message
}

$summary = [pscustomobject]@{
    Host = $env:COMPUTERNAME; Mode = $Mode; Started = $start; Finished = (Get-Date)
    VerifierOnNdkDisc = $verified; Scenarios = $results
}
$summary | ConvertTo-Json -Depth 4 | Out-File -Encoding utf8 (Join-Path $ResultsPath 'summary.json')
$results | Format-Table -AutoSize | Out-Host
Compress-Archive -Force -Path (Join-Path $ResultsPath '*') -DestinationPath "$ResultsPath.zip"
Write-Host "Collected: $ResultsPath.zip"
if ($results | Where-Object { -not $_.Passed }) { exit 1 }
