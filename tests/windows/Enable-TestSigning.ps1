<#
.SYNOPSIS
Turn on test signing so Windows loads the test-signed ndkdisc.sys. Nothing else is changed.

.DESCRIPTION
ndkdisc.sys from the CI package (or `cargo make default --profile driver`) is signed with a
self-signed test certificate (CN=WDRLocalTestCert), which Windows loads only in test-signing
mode. This script:
  1. checks that it runs elevated and that Secure Boot is off (bcdedit refuses testsigning
     under Secure Boot; turn it off in the firmware settings first - a VM is the usual choice);
  2. runs `bcdedit /set testsigning on` (the desktop then shows "Test Mode");
  3. tells you to reboot. It reboots only if you pass -Reboot.
Undo with `bcdedit /set testsigning off` (or Uninstall-NdkDisc.ps1 -DisableTestSigning) and a
reboot. Use a test machine: test-signing mode lowers the machine's protection.

.PARAMETER Reboot
Restart the computer at the end (after a confirmation prompt).
#>
[CmdletBinding(SupportsShouldProcess, ConfirmImpact = 'High')]
param([switch] $Reboot)

. "$PSScriptRoot\Common.ps1"
Assert-Administrator

if (Test-TestSigning) {
    Write-Host 'Test signing is already on.'
    return
}

try {
    if (Confirm-SecureBootUEFI) {
        throw 'Secure Boot is on: bcdedit cannot enable test signing. Disable Secure Boot in the firmware (or the VM settings) and run this again.'
    }
} catch [System.PlatformNotSupportedException] {
    Write-Host 'Legacy BIOS firmware: no Secure Boot to check.'
}

if ($PSCmdlet.ShouldProcess('boot configuration {current}', 'bcdedit /set testsigning on')) {
    Invoke-Native bcdedit @('/set', 'testsigning', 'on') | Out-Null
    Write-Host 'Test signing is on from the next boot. Reboot before running Install-NdkDisc.ps1.'
    if ($Reboot -and $PSCmdlet.ShouldProcess($env:COMPUTERNAME, 'Restart-Computer')) {
        Restart-Computer
    }
}
