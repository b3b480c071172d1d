# Shared helpers for the ndkdisc on-target scripts. Dot-source it: . "$PSScriptRoot\Common.ps1"

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# Names that must match inf/ndkdisc.inx (driver/kmdf/tests/inx.rs checks the hardware id).
$script:HardwareId = 'Root\NdkDisc'
$script:ServiceName = 'ndkdisc'
$script:InfName = 'ndkdisc.inf'
$script:DriverFile = 'ndkdisc.sys'
$script:TestCertificate = 'WDRLocalTestCert.cer'

function Assert-Administrator {
    $principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw 'Run this script from an elevated PowerShell (Run as administrator).'
    }
}

# Run a native tool, echo its command line and output, and fail on a non-zero exit code
# unless it is listed in -AllowedExitCodes. The tool is judged by its exit code alone: Windows
# PowerShell 5.1 wraps every stderr line of a native command redirected with 2>&1 in an
# ErrorRecord, which the script-wide $ErrorActionPreference = 'Stop' would turn into a
# terminating error (a tool that merely warns on stderr would stop the script). So this function
# runs it with 'Continue', set in its own scope only.
function Invoke-Native {
    param(
        [Parameter(Mandatory)] [string] $FilePath,
        [string[]] $ArgumentList = @(),
        [int[]] $AllowedExitCodes = @(0)
    )
    $ErrorActionPreference = 'Continue'
    Write-Host "> $FilePath $($ArgumentList -join ' ')"
    $output = & $FilePath @ArgumentList 2>&1 | ForEach-Object { "$_" }
    $code = $LASTEXITCODE
    $output | ForEach-Object { Write-Host "  $_" }
    if ($AllowedExitCodes -notcontains $code) {
        throw "$FilePath exited with $code"
    }
    return $output
}

function Test-TestSigning {
    # As in Invoke-Native: bcdedit's stderr must not become a terminating error here.
    $ErrorActionPreference = 'Continue'
    $boot = & bcdedit /enum '{current}' 2>&1 | Out-String
    return $boot -match '(?im)^\s*testsigning\s+Yes\s*$'
}

# The ndkdisc devices present (root-enumerated, any instance id), via the PnP module.
function Get-NdkDiscDevice {
    Get-PnpDevice -PresentOnly:$false -ErrorAction SilentlyContinue |
        Where-Object { $_.HardwareID -contains $script:HardwareId }
}

# devgen ships with the WDK (Tools\<ver>\<arch>); devcon with the WDK too (older kits) or as a
# separate download. Returns the first found, or $null.
function Find-WdkTool {
    param([Parameter(Mandatory)] [string] $Name)
    $onPath = Get-Command "$Name.exe" -ErrorAction SilentlyContinue
    if ($onPath) { return $onPath.Source }
    $arch = if ($env:PROCESSOR_ARCHITECTURE -eq 'ARM64') { 'arm64' } else { 'x64' }
    $tools = "${env:ProgramFiles(x86)}\Windows Kits\10\Tools"
    $found = Get-ChildItem -Path $tools -Recurse -Filter "$Name.exe" -ErrorAction SilentlyContinue |
        Where-Object { $_.DirectoryName -like "*\$arch" } | Select-Object -First 1
    if ($found) { return $found.FullName }
    return $null
}
