<#
.SYNOPSIS
Remove the ndkdisc device and driver package; optionally reset Driver Verifier and test signing.

.DESCRIPTION
  1. removes every Root\NdkDisc device (`pnputil /remove-device`, or devcon on older systems);
     close ndkctl and any other handle to \\.\NdkDisc first;
  2. deletes each driver-store package whose original name is ndkdisc.inf
     (`pnputil /delete-driver oemNN.inf /uninstall /force`);
  3. with -ResetVerifier: `verifier /reset` (reboot to take effect);
  4. with -DisableTestSigning: `bcdedit /set testsigning off` (reboot to take effect).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [switch] $ResetVerifier,
    [switch] $DisableTestSigning
)

. "$PSScriptRoot\Common.ps1"
Assert-Administrator

foreach ($device in @(Get-NdkDiscDevice)) {
    if ($PSCmdlet.ShouldProcess($device.InstanceId, 'remove device')) {
        try {
            Invoke-Native pnputil @('/remove-device', $device.InstanceId) | Out-Null
        } catch {
            $devcon = Find-WdkTool devcon
            if (-not $devcon) { throw }
            Invoke-Native $devcon @('remove', "@$($device.InstanceId)") | Out-Null
        }
    }
}

$packages = Get-WindowsDriver -Online -All |
    Where-Object { (Split-Path -Leaf $_.OriginalFileName) -eq $InfName }
foreach ($package in $packages) {
    if ($PSCmdlet.ShouldProcess($package.Driver, 'pnputil /delete-driver')) {
        Invoke-Native pnputil @('/delete-driver', $package.Driver, '/uninstall', '/force') -AllowedExitCodes @(0, 3010) | Out-Null
    }
}

if ($ResetVerifier -and $PSCmdlet.ShouldProcess('Driver Verifier', 'verifier /reset')) {
    Invoke-Native verifier @('/reset') -AllowedExitCodes @(0, 2) | Out-Null
}
if ($DisableTestSigning -and $PSCmdlet.ShouldProcess('boot configuration', 'bcdedit /set testsigning off')) {
    Invoke-Native bcdedit @('/set', 'testsigning', 'off') | Out-Null
}
if ($ResetVerifier -or $DisableTestSigning) { Write-Host 'Reboot for the boot settings to take effect.' }
Write-Host 'ndkdisc removed.'
