<#
  Group Policy logoff script (User Configuration > Policies > Windows Settings > Scripts >
  Logoff): tells the portal the user logged off, so maintenance waiting for them goes on at
  once.
#>
. "$PSScriptRoot\PortalAgent.ps1"
Send-PortalSession -Event 'logoff' | Out-Null
