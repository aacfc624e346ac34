<#
  Scheduled heartbeat: who is logged on now (nobody is a valid answer), so the portal knows
  the desktop's session is still what it last heard. Without a report for
  AGENT_SESSION_TIMEOUT_SECONDS (default 900 s) the portal shows the session as "unknown" and
  maintenance under the "wait" policy waits for it. Also where warnings and forced logoffs
  are received between logon and logoff.

  Install once (in the golden image, as Administrator), running as SYSTEM every minute:
    powershell -ExecutionPolicy Bypass -File Heartbeat.ps1 -Install
#>
param([switch]$Install, [int]$EveryMinutes = 1)
. "$PSScriptRoot\PortalAgent.ps1"

if ($Install) {
    $action = New-ScheduledTaskAction -Execute 'powershell.exe' `
        -Argument "-NoProfile -NonInteractive -ExecutionPolicy Bypass -File `"$PSCommandPath`""
    $triggers = @(
        (New-ScheduledTaskTrigger -AtStartup),
        (New-ScheduledTaskTrigger -Once -At (Get-Date) `
            -RepetitionInterval (New-TimeSpan -Minutes $EveryMinutes))
    )
    $settings = New-ScheduledTaskSettingsSet -MultipleInstances IgnoreNew `
        -ExecutionTimeLimit (New-TimeSpan -Minutes 30)
    Register-ScheduledTask -TaskName 'Portal session heartbeat' -Action $action `
        -Trigger $triggers -Settings $settings -User 'SYSTEM' -RunLevel Highest -Force | Out-Null
    return
}

Send-PortalSession -Event 'heartbeat' -User (Get-LoggedOnUser) | Out-Null
