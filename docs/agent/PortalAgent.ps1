<#
  Shared by Logon.ps1, Logoff.ps1 and Heartbeat.ps1: the portal's address and token, the
  report itself (Invoke-RestMethod), and what the portal asks in its answer.
#>
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12

function Get-PortalAgentConfig {
    $key = 'HKLM:\SOFTWARE\LinkedClonePortal\Agent'
    if (Test-Path $key) {
        $reg = Get-ItemProperty -Path $key
        if ($reg.Url -and $reg.Token) { return @{ Url = $reg.Url; Token = $reg.Token } }
    }
    $file = Join-Path $env:ProgramData 'PortalAgent\agent.conf'
    $config = @{}
    foreach ($line in (Get-Content -Path $file)) {
        if ($line -match '^\s*(url|token)\s*=\s*(.+?)\s*$') { $config[$Matches[1]] = $Matches[2] }
    }
    return @{ Url = $config['url']; Token = $config['token'] }
}

function Send-PortalSession {
    param(
        [Parameter(Mandatory)][ValidateSet('logon', 'logoff', 'heartbeat')][string]$Event,
        [string]$User = ''
    )
    $config = Get-PortalAgentConfig
    $body = @{
        desktop = $env:COMPUTERNAME
        event   = $Event
        at      = (Get-Date).ToUniversalTime().ToString('o')
    }
    if ($User) { $body.user = $User }
    $answer = Invoke-RestMethod -Method Post -Uri ($config.Url.TrimEnd('/') + '/api/v1/agent/sessions') `
        -Headers @{ Authorization = "Bearer $($config.Token)" } `
        -ContentType 'application/json' -Body ($body | ConvertTo-Json) -TimeoutSec 15
    Invoke-PortalActions -Actions $answer.actions
    return $answer
}

function Invoke-PortalActions {
    # What maintenance asks: a message to show, then a logoff when the grace period ends.
    param($Actions)
    foreach ($action in @($Actions)) {
        if ($null -eq $action) { continue }
        switch ($action.type) {
            'message' {
                # msg.exe reaches every session on this desktop, also from SYSTEM.
                & "$env:SystemRoot\System32\msg.exe" '*' /TIME:300 $action.text
            }
            'logoff' {
                Start-Sleep -Seconds ([int]$action.in_seconds)
                # Every interactive session (a pooled desktop has one user).
                $sessions = (& quser 2>$null) | Select-Object -Skip 1
                foreach ($line in $sessions) {
                    if ($line -match '\s(\d+)\s+(Active|Disc)') { & logoff.exe $Matches[1] }
                }
            }
        }
    }
}

function Get-LoggedOnUser {
    # The user of the interactive session, if any ('' when nobody is logged on).
    $owner = (Get-CimInstance -ClassName Win32_ComputerSystem).UserName
    if ($owner) { return ($owner -split '\\')[-1] }
    return ''
}
