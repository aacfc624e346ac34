<#
  Group Policy logon script (User Configuration > Policies > Windows Settings > Scripts >
  Logon, "PowerShell Scripts" tab): tells the portal who logged on to this desktop, so
  maintenance waits for them (or warns them) instead of rebuilding the desktop under them.

  Reads the portal's URL and the endpoint's agent token from the registry
  (HKLM\SOFTWARE\LinkedClonePortal\Agent: Url, Token; set by Group Policy Preferences, with
  read access for SYSTEM and Administrators only is better: then run Heartbeat.ps1 as SYSTEM
  at logon instead of this script), else from C:\ProgramData\PortalAgent\agent.conf
  (lines "url = ..." and "token = ...").
#>
. "$PSScriptRoot\PortalAgent.ps1"
Send-PortalSession -Event 'logon' -User $env:USERNAME | Out-Null
