<#
.SYNOPSIS
Run the shipped ndkctl scenario files against the installed driver, on one host (NIC loopback)
or two, and collect the results into one folder and a zip.

.DESCRIPTION
Modes (each runs scenario files from -ScenarioPath with `ndkctl --json scenario FILE --set ...`,
the same files `ndkctl --sim scenario FILE` runs on the simulator):
  Loopback  one host whose RDMA NIC supports loopback (NDK_ADAPTER_FLAG_LOOPBACK_CONNECTIONS_
            SUPPORTED): peer-disconnect.ndk (a server and a client handle, both on
            -LocalAddress) then cancel-and-errors.ndk.
  Server    the passive side of a two-host run: peer-disconnect-server.ndk listens on
            -LocalAddress:-Port, accepts one connection and checks the peer disconnect.
  Client    the active side: peer-disconnect-client.ndk connects to -PeerAddress:-Port, holds
            the connection, and disconnects. Start the Server first.

The adapter's interface index is looked up with `ndkctl --json adapters` (the adapter that has
-LocalAddress; in Client mode without -LocalAddress, the first adapter of -PeerAddress's family).

Every run records: the Driver Verifier state (`verifier /querysettings`; -RequireVerifier
fails the run if ndkdisc.sys is not verified), the device and service state, `ndkctl --json
info`, `ndkctl --json adapters`, each scenario's command line, output (JSON lines), errors and
exit code with its documented meaning (`ndkctl --help`), and the System event log since the
start (driver, PnP and bugcheck entries). Results go to -ResultsPath (a timestamped folder by
default) and are zipped beside it. The script exits 1 if ndkctl could not reach the driver or
a scenario failed.

The scenario files and their variables are in $Scenarios below, in one table; every ndkctl
command line goes through Invoke-NdkCtl with an inline argument array, which
tools/ndkctl/tests/scripts.rs checks against the real CLI (subcommands and flags).

.PARAMETER NdkCtl
ndkctl.exe. Default: the package folder above this script (the CI artifact has it there).

.PARAMETER ScenarioPath
The folder with the *.ndk scenario files. Default: <package>\scenarios (the CI artifact), else
tools\ndkctl\scenarios of the repository this script is in.

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
    # Loopback uses -Port, -Port + 1 and -Port + 2 (cancel-and-errors.ndk's refused connect).
    [ValidateRange(1, 65533)] [int] $Port = 54321,
    [string] $NdkCtl = (Join-Path (Split-Path -Parent $PSScriptRoot) 'ndkctl.exe'),
    [string] $ScenarioPath,
    [string] $ResultsPath = (Join-Path (Get-Location) ("ndkdisc-results-{0}-{1}" -f $env:COMPUTERNAME, (Get-Date -Format 'yyyyMMdd-HHmmss'))),
    [ValidateRange(1, 3600)] [int] $TimeoutSeconds = 120,
    [switch] $RequireVerifier
)

. "$PSScriptRoot\Common.ps1"
Assert-Administrator

if (($Mode -in @('Loopback', 'Server')) -and -not $LocalAddress) { throw "-LocalAddress is required for $Mode" }
if ($Mode -eq 'Client' -and -not $PeerAddress) { throw '-PeerAddress is required for Client' }
if (-not (Test-Path $NdkCtl)) { throw "ndkctl not found at $NdkCtl (pass -NdkCtl)" }
$NdkCtl = (Resolve-Path $NdkCtl).Path
if (-not $ScenarioPath) {
    $packageRoot = Split-Path -Parent $PSScriptRoot
    $ScenarioPath = @(
        (Join-Path $packageRoot 'scenarios'),
        (Join-Path (Split-Path -Parent $packageRoot) 'tools\ndkctl\scenarios')
    ) | Where-Object { Test-Path $_ } | Select-Object -First 1
    if (-not $ScenarioPath) { throw "no scenarios folder next to $PSScriptRoot (pass -ScenarioPath)" }
}
$ScenarioPath = (Resolve-Path $ScenarioPath).Path

$start = Get-Date
New-Item -ItemType Directory -Force -Path $ResultsPath | Out-Null
$ResultsPath = (Resolve-Path $ResultsPath).Path
Write-Host "Results: $ResultsPath"

# ndkctl's exit codes, as `ndkctl --help` and the README document them.
$ExitCodeMeaning = @{
    0  = 'success'
    1  = 'deviation: the scenario saw something it did not expect'
    2  = 'usage: bad arguments, unreadable or malformed scenario file'
    3  = 'driver not installed / device missing'
    4  = 'access denied: not an administrator, or a read-only handle asked for a change'
    5  = 'bad address'
    6  = 'unknown id (STATUS_NOT_FOUND)'
    7  = 'timeout (the request was cancelled after the limit)'
    8  = 'cancelled (the driver cancelled it: ABORT, handle close)'
    9  = 'the driver failed the operation with another NTSTATUS (e.g. connect refused)'
    10 = 'internal error (malformed reply, system failure)'
    130 = 'interrupted (Ctrl-C)'
    141 = 'the output pipe was closed'
}

# One command-line string for Start-Process, quoted the way the Rust runtime (and the C runtime)
# splits it: Start-Process joins an array with spaces and does not quote, so a path with a space
# would become two arguments.
function ConvertTo-CommandLine([string[]] $Arguments) {
    ($Arguments | ForEach-Object {
            if ($_ -and $_ -notmatch '[\s"]') { $_ }
            else { '"' + (($_ -replace '(\\*)"', '$1$1\"') -replace '(\\+)$', '$1$1') + '"' }
        }) -join ' '
}

# JSON lines -> objects (lines that are not JSON objects are skipped).
function ConvertFrom-JsonLines([string[]] $Lines) {
    foreach ($line in $Lines) {
        if ($line -notmatch '^\s*\{') { continue }
        try { $line | ConvertFrom-Json } catch { Write-Verbose "not JSON: $line" }
    }
}

# Run ndkctl with -Arguments (always an inline @(...) array whose first non-flag element is the
# subcommand: tools/ndkctl/tests/scripts.rs reads these call sites). Output and errors go to
# <Name>.out.txt / <Name>.err.txt; a run that does not end within -TimeoutSeconds is killed.
# Returns the exit code (or $null when killed), its documented meaning, the error ndkctl reported
# (its --json error line on stderr) and the output lines.
function Invoke-NdkCtl {
    param(
        [Parameter(Mandatory)] [string] $Name,
        [Parameter(Mandatory)] [AllowEmptyString()] [string[]] $Arguments,
        [int] $TimeoutSeconds = 60
    )
    $out = Join-Path $ResultsPath "$Name.out.txt"
    $err = Join-Path $ResultsPath "$Name.err.txt"
    $commandLine = ConvertTo-CommandLine $Arguments
    Write-Host "> ndkctl $commandLine"
    "`"$NdkCtl`" $commandLine" | Out-File -Encoding utf8 (Join-Path $ResultsPath "$Name.cmd.txt")
    $process = Start-Process -FilePath $NdkCtl -ArgumentList $commandLine -NoNewWindow -PassThru `
        -RedirectStandardOutput $out -RedirectStandardError $err
    $null = $process.Handle   # keeps ExitCode readable after exit (a Start-Process -PassThru quirk)
    if ($process.WaitForExit($TimeoutSeconds * 1000)) {
        $code = $process.ExitCode
        $meaning = $ExitCodeMeaning[$code]
        if (-not $meaning) { $meaning = 'undocumented exit code' }
    } else {
        $process.Kill()
        $null = $process.WaitForExit(10000)
        $code = $null
        $meaning = "killed: still running after $TimeoutSeconds s"
    }
    $stdout = @(if (Test-Path $out) { Get-Content -Encoding UTF8 $out })
    $stderr = @(if (Test-Path $err) { Get-Content -Encoding UTF8 $err })
    $reported = @(ConvertFrom-JsonLines $stderr | Where-Object {
            ($_.PSObject.Properties.Name -contains 'type') -and $_.type -eq 'error'
        }) | Select-Object -Last 1
    $message = if ($reported) { $reported.message } elseif ($code -ne 0) { ($stderr -join ' ').Trim() } else { '' }
    Write-Host "  exit $code ($meaning) $message"
    [pscustomobject]@{
        Name = $Name; ExitCode = $code; Meaning = $meaning; Message = $message
        Stdout = $stdout; Stderr = $stderr
    }
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

$results = [System.Collections.Generic.List[object]]::new()
function Add-Result($Run) {
    $results.Add([pscustomobject]@{
            Scenario = $Run.Name; ExitCode = $Run.ExitCode; Passed = ($Run.ExitCode -eq 0)
            Meaning = $Run.Meaning; Message = $Run.Message
        })
}

# The driver must answer GET_INFO and list an NDK adapter for the address before any scenario.
$info = Invoke-NdkCtl -Name 'ndkctl-info' -Arguments @('--json', 'info')
$adapters = Invoke-NdkCtl -Name 'ndkctl-adapters' -Arguments @('--json', 'adapters')
$ready = $true
foreach ($run in @($info, $adapters)) {
    if ($run.ExitCode -ne 0) { Add-Result $run; $ready = $false }
}

# The NDK adapter that has $Address, or (with -SameFamily) the first of $Address's family.
function Find-NdkAdapter([string] $Address, [switch] $SameFamily) {
    $want = [System.Net.IPAddress]::Parse($Address)
    $list = @(ConvertFrom-JsonLines $adapters.Stdout | Where-Object {
            ($_.PSObject.Properties.Name -contains 'type') -and $_.type -eq 'adapter'
        })
    foreach ($a in $list) {
        $have = [System.Net.IPAddress]::Parse($a.address)
        $fits = if ($SameFamily) { $have.AddressFamily -eq $want.AddressFamily } else { $have.Equals($want) }
        if ($fits) { return $a }
    }
    $known = ($list | ForEach-Object { "if $($_.if_index) $($_.address)" }) -join '; '
    throw "no NDK adapter $(if ($SameFamily) { 'of the address family of' } else { 'has' }) $Address (ndkctl adapters: $known)"
}

if ($ready) {
    try {
        $chosen = if ($Mode -eq 'Client' -and -not $LocalAddress) { Find-NdkAdapter $PeerAddress -SameFamily } else { Find-NdkAdapter $LocalAddress }
    } catch {
        $results.Add([pscustomobject]@{
                Scenario = 'adapter-lookup'; ExitCode = $null; Passed = $false; Meaning = 'no usable NDK adapter'; Message = "$_"
            })
        $ready = $false
    }
}
if ($ready) {
    $ifIndex = $chosen.if_index
    $localAddr = $chosen.address
    Write-Host "Adapter: interface $ifIndex, $localAddr"

    # Scenario name -> shipped file and its --set variables (see each file's `set` lines). Wait
    # limits follow -TimeoutSeconds; receives are pre-posted by the files themselves.
    $wait = "${TimeoutSeconds}s"
    $Scenarios = [ordered]@{
        'peer-disconnect'        = @{ File = 'peer-disconnect.ndk'; Set = [ordered]@{
                SERVER_IF = $ifIndex; SERVER_ADDR = $localAddr; CLIENT_IF = $ifIndex; CLIENT_ADDR = $localAddr; PORT = $Port } }
        'cancel-and-errors'      = @{ File = 'cancel-and-errors.ndk'; Set = [ordered]@{
                A_IF = $ifIndex; A_ADDR = $localAddr; B_IF = $ifIndex; B_ADDR = $localAddr
                PORT = $Port + 1; REFUSED_PORT = $Port + 2; UNUSED_ADDR = '192.0.2.254' } }
        'peer-disconnect-server' = @{ File = 'peer-disconnect-server.ndk'; Set = [ordered]@{
                SERVER_IF = $ifIndex; SERVER_ADDR = $localAddr; PORT = $Port; ACCEPT_TIMEOUT = $wait; PEER_TIMEOUT = $wait } }
        'peer-disconnect-client' = @{ File = 'peer-disconnect-client.ndk'; Set = [ordered]@{
                CLIENT_IF = $ifIndex; CLIENT_ADDR = $localAddr; SERVER_ADDR = $PeerAddress; PORT = $Port; CONNECT_TIMEOUT = $wait } }
    }
    $plan = switch ($Mode) {
        'Loopback' { @('peer-disconnect', 'cancel-and-errors') }
        'Server' { @('peer-disconnect-server') }
        'Client' { @('peer-disconnect-client') }
    }

    foreach ($name in $plan) {
        $scenario = $Scenarios[$name]
        $file = Join-Path $ScenarioPath $scenario.File
        if (-not (Test-Path $file)) { throw "scenario file $file is missing (pass -ScenarioPath)" }
        $sets = @($scenario.Set.GetEnumerator() | ForEach-Object { '--set'; "$($_.Key)=$($_.Value)" })
        $run = Invoke-NdkCtl -Name $name -Arguments (@('--json', 'scenario', $file) + $sets) `
            -TimeoutSeconds (3 * $TimeoutSeconds + 60)
        Add-Result $run
    }
}

# What the system logged meanwhile: driver, PnP, verifier and bugcheck entries.
Save-Output 'system-events' {
    Get-WinEvent -FilterHashtable @{ LogName = 'System'; StartTime = $start } -ErrorAction SilentlyContinue |
        Where-Object { $_.Level -le 3 -or $_.ProviderName -match '(?i)ndkdisc|kernel-pnp|bugcheck|verifier' } |
        Format-List TimeCreated, ProviderName, Id, LevelDisplayName, Message
}

$summary = [pscustomobject]@{
    Host = $env:COMPUTERNAME; Mode = $Mode; Started = $start; Finished = (Get-Date)
    VerifierOnNdkDisc = $verified; DriverReachable = $ready; Scenarios = $results
}
$summary | ConvertTo-Json -Depth 4 | Out-File -Encoding utf8 (Join-Path $ResultsPath 'summary.json')
$results | Format-Table -AutoSize -Wrap | Out-Host
Compress-Archive -Force -Path (Join-Path $ResultsPath '*') -DestinationPath "$ResultsPath.zip"
Write-Host "Collected: $ResultsPath.zip"
if (-not $ready) {
    Write-Host 'No scenario ran: see the table above (exit 3: the driver is not installed or its device is missing, run Install-NdkDisc.ps1; adapter-lookup: pass the address of an NDK adapter)'
    exit 1
}
if ($results | Where-Object { -not $_.Passed }) { exit 1 }
