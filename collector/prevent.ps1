<#
portfleet prevent script: reserve the team's TCP ports as administered ('*') excluded port ranges
before Hyper-V/WinNAT take them at the next boot.

A dry run unless -Apply is given (or the variant was generated to apply); -Detect only says
whether every port is protected (exit 1 when one is not: an Intune detection script). Safe to
run again: a port an administered range covers already is left alone. A port a program holds,
or one inside a range Hyper-V/WinNAT reserved at run time, is reported and never forced. It
never deletes a range, and it changes the TCP dynamic port range only in a copy generated with
--move-dynamic-range (the note below says so). Windows PowerShell 5.1, no network access.
Prints one JSON result; logs to the Application event log (source portfleet) and to a file.

Exit codes: 0 every port protected (or, in a dry run, nothing stands in the way); 1 a port is
not protected (detect) or a command failed; 2 a port needs a person (held by a program, or
inside a run-time range: turn Hyper-V off, run this, turn it on, or reboot first); 3 -Apply
without elevation.
#>
[CmdletBinding()]
param(
    [switch]$Apply,
    [switch]$Detect,
    [switch]$IPv6,
    [string]$LogPath = ''
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# Filled in by `portfleet prevent-script`: first port and port count of each wanted range
# (two flat lists: a nested list of one element would unroll).
$WantedStarts = @()
$WantedCounts = @()
$BakedMode = 'dry-run'
$ScriptVersion = '1'

#region move-dynamic-range
# Kept only by `portfleet prevent-script --move-dynamic-range START`: the TCP dynamic range to
# set, START up to 65535 (the generator checked that no wanted port is inside it).
$DynamicStart = 0
$DynamicCount = 0
#endregion

$EventSource = 'portfleet'
$SystemPid = 4

function Write-PreventLog([string]$Message, [string]$Level) {
    $line = '{0} {1} {2}' -f (Get-Date).ToUniversalTime().ToString('o'), $Level, $Message
    try {
        $folder = Split-Path -Parent $script:LogFile
        if (-not (Test-Path -LiteralPath $folder)) {
            New-Item -ItemType Directory -Path $folder -Force | Out-Null
        }
        Add-Content -LiteralPath $script:LogFile -Value $line -Encoding UTF8
    } catch {
        Write-Verbose ('cannot write the log file: ' + $_.Exception.Message)
    }
    $entryType = 'Information'
    $eventId = 1000
    if ($Level -eq 'WARN') { $entryType = 'Warning'; $eventId = 1001 }
    if ($Level -eq 'ERROR') { $entryType = 'Error'; $eventId = 1002 }
    try {
        Write-EventLog -LogName Application -Source $EventSource -EventId $eventId -EntryType $entryType -Message $Message
    } catch {
        Write-Verbose ('cannot write the event log: ' + $_.Exception.Message)
    }
}

function Test-Elevated {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Get-ExcludedRanges([string]$Family) {
    # Only lines of two numbers (and a '*') count: the headers are in the display language.
    $found = @()
    if ($Family -eq 'ipv6') {
        $text = netsh.exe int ipv6 show excludedportrange protocol=tcp
    } else {
        $text = netsh.exe int ipv4 show excludedportrange protocol=tcp
    }
    if ($LASTEXITCODE -ne 0) { throw ('netsh show excludedportrange failed with ' + $LASTEXITCODE) }
    foreach ($line in $text) {
        if ($line -match '^\s*(\d+)\s+(\d+)\s*(\*?)\s*$') {
            $found += New-Object PSObject -Property @{
                Start = [int]$Matches[1]; End = [int]$Matches[2]; Administered = ($Matches[3] -eq '*')
            }
        }
    }
    return ,$found
}

function Get-Holders([int]$First, [int]$Last) {
    $holders = @()
    $listening = @(Get-NetTCPConnection -State Listen -ErrorAction SilentlyContinue)
    foreach ($connection in $listening) {
        $port = [int]$connection.LocalPort
        if ($port -ge $First -and $port -le $Last) {
            $owner = [int]$connection.OwningProcess
            $name = 'System'
            if ($owner -ne $SystemPid) {
                $process = Get-Process -Id $owner -ErrorAction SilentlyContinue
                $name = 'PID ' + $owner
                if ($null -ne $process) { $name = $process.ProcessName }
            }
            $holders += ('{0} (PID {1}) on {2}' -f $name, $owner, $port)
        }
    }
    return ,$holders
}

function Get-PortState([int]$First, [int]$Count, $Excluded) {
    $last = $First + $Count - 1
    $state = New-Object PSObject -Property @{
        start = $First; end = $last; status = ''; reason = ''; families = @()
    }
    foreach ($family in $Excluded.Keys) {
        $ranges = $Excluded[$family]
        $covered = $false
        foreach ($item in $ranges) {
            if ($item.Administered -and $item.Start -le $First -and $item.End -ge $last) { $covered = $true }
        }
        if ($covered) { continue }
        foreach ($item in $ranges) {
            if ($item.Start -le $last -and $item.End -ge $First) {
                $kind = 'a range Hyper-V/WinNAT reserved at run time'
                if ($item.Administered) { $kind = 'an administered range that covers it only in part' }
                $state.status = 'needs-hyperv-sequence'
                $state.reason = ('{0}-{1} is inside {2} ({3}-{4}, {5}): turn Hyper-V off, run this, turn it on, or reboot first' -f $First, $last, $kind, $item.Start, $item.End, $family)
                return $state
            }
        }
        $state.families += $family
    }
    if ($state.families.Count -eq 0) {
        $state.status = 'protected'
        $state.reason = 'an administered range covers it'
        return $state
    }
    $holders = Get-Holders $First $last
    if ($holders.Count -gt 0) {
        $state.status = 'held'
        $state.reason = ('held by ' + ($holders -join ', ') + ': stop it first, or leave the port to it')
        return $state
    }
    $state.status = 'to-reserve'
    $state.reason = 'free: an administered range would keep Hyper-V/WinNAT off it'
    return $state
}

#region move-dynamic-range
function Get-DynamicRange([string]$Family) {
    # The two numbers netsh prints, in order (start, count): the labels are in the display language.
    if ($Family -eq 'ipv6') {
        $text = netsh.exe int ipv6 show dynamicport tcp
    } else {
        $text = netsh.exe int ipv4 show dynamicport tcp
    }
    if ($LASTEXITCODE -ne 0) { throw ('netsh show dynamicport failed with ' + $LASTEXITCODE) }
    $numbers = @()
    foreach ($line in $text) {
        if ($line -match '^\D+?(\d+)\s*$') { $numbers += [int]$Matches[1] }
    }
    if ($numbers.Count -ne 2) { throw ('netsh show dynamicport printed {0} numbers, not 2' -f $numbers.Count) }
    return ,$numbers
}

function Get-DynamicState([string]$Family) {
    $found = Get-DynamicRange $Family
    $state = New-Object PSObject -Property @{
        family = $Family; start = $DynamicStart; count = $DynamicCount
        found_start = $found[0]; found_count = $found[1]; status = 'to-move'; reason = ''
    }
    $now = '{0}-{1}' -f $found[0], ($found[0] + $found[1] - 1)
    if ($found[0] -eq $DynamicStart -and $found[1] -eq $DynamicCount) {
        $state.status = 'in-place'
        $state.reason = ('the TCP dynamic range is {0} already' -f $now)
    } else {
        $state.reason = ('the TCP dynamic range is {0}; it would become {1}-{2}' -f $now, $DynamicStart, ($DynamicStart + $DynamicCount - 1))
    }
    return $state
}

function Read-Dynamic {
    $dynamic = @(Get-DynamicState 'ipv4')
    if ($IPv6) { $dynamic += Get-DynamicState 'ipv6' }
    return ,$dynamic
}

function Set-DynamicRange([string]$Family) {
    if ($Family -eq 'ipv6') {
        netsh.exe int ipv6 set dynamicport tcp start=$DynamicStart num=$DynamicCount store=persistent | Out-Null
    } else {
        netsh.exe int ipv4 set dynamicport tcp start=$DynamicStart num=$DynamicCount store=persistent | Out-Null
    }
    if ($LASTEXITCODE -ne 0) { throw ('netsh set dynamicport failed with ' + $LASTEXITCODE) }
    Write-PreventLog ('set the TCP dynamic range ({0}) to {1}-{2}' -f $Family, $DynamicStart, ($DynamicStart + $DynamicCount - 1)) 'INFO'
}
#endregion

function Read-Excluded {
    $excluded = [ordered]@{ ipv4 = (Get-ExcludedRanges 'ipv4') }
    if ($IPv6) { $excluded['ipv6'] = (Get-ExcludedRanges 'ipv6') }
    return $excluded
}

function Add-Reservations($States) {
    $winnat = Get-Service -Name winnat -ErrorAction SilentlyContinue
    $running = ($null -ne $winnat) -and ($winnat.Status -eq 'Running')
    if ($running) {
        net.exe stop winnat | Out-Null
        if ($LASTEXITCODE -ne 0) { throw ('net stop winnat failed with ' + $LASTEXITCODE) }
        Write-PreventLog 'stopped winnat to reserve ports' 'INFO'
    }
    try {
        foreach ($state in $States) {
            foreach ($family in $state.families) {
                $count = $state.end - $state.start + 1
                if ($family -eq 'ipv6') {
                    netsh.exe int ipv6 add excludedportrange protocol=tcp startport=$($state.start) numberofports=$count store=persistent | Out-Null
                } else {
                    netsh.exe int ipv4 add excludedportrange protocol=tcp startport=$($state.start) numberofports=$count store=persistent | Out-Null
                }
                # IPv4 and IPv6 may share one list: the second add can find the range there.
                if ($LASTEXITCODE -ne 0 -and $family -eq 'ipv4') {
                    throw ('netsh add excludedportrange {0}-{1} failed with {2}' -f $state.start, $state.end, $LASTEXITCODE)
                }
                Write-PreventLog ('reserved TCP {0}-{1} ({2})' -f $state.start, $state.end, $family) 'INFO'
            }
        }
    } finally {
        if ($running) {
            net.exe start winnat | Out-Null
            if ($LASTEXITCODE -ne 0) { Write-PreventLog ('net start winnat failed with ' + $LASTEXITCODE) 'ERROR' }
        }
    }
}

$script:LogFile = $LogPath
if (-not $script:LogFile) { $script:LogFile = Join-Path $env:ProgramData 'portfleet\prevent.log' }
$mode = $BakedMode
if ($Apply) { $mode = 'apply' }
if ($Detect) { $mode = 'detect' }
$elevated = Test-Elevated
$exitCode = 0
if ($elevated) {
    try {
        if (-not [Diagnostics.EventLog]::SourceExists($EventSource)) {
            New-EventLog -LogName Application -Source $EventSource
        }
    } catch {
        Write-Verbose ('cannot register the event source: ' + $_.Exception.Message)
    }
}

$states = @()
$excluded = Read-Excluded
for ($i = 0; $i -lt $WantedStarts.Count; $i++) {
    $states += Get-PortState $WantedStarts[$i] $WantedCounts[$i] $excluded
}
$pending = @($states | Where-Object { $_.status -eq 'to-reserve' })
$applied = $false
if ($mode -eq 'apply' -and $pending.Count -gt 0) {
    if (-not $elevated) {
        Write-PreventLog 'not elevated: run as an administrator or as SYSTEM to reserve ports' 'ERROR'
        $exitCode = 3
    } else {
        try {
            Add-Reservations $pending
            $applied = $true
        } catch {
            Write-PreventLog ('reserving failed: ' + $_.Exception.Message) 'ERROR'
            $exitCode = 1
        }
        $excluded = Read-Excluded
        $reservedStarts = @($pending | ForEach-Object { $_.start })
        $states = @()
        for ($i = 0; $i -lt $WantedStarts.Count; $i++) {
            $state = Get-PortState $WantedStarts[$i] $WantedCounts[$i] $excluded
            if ($state.status -eq 'protected' -and $reservedStarts -contains $state.start) {
                $state.status = 'reserved'
                $state.reason = 'reserved now as an administered range'
            }
            $states += $state
        }
    }
}

#region move-dynamic-range
$dynamic = Read-Dynamic
$moving = @($dynamic | Where-Object { $_.status -eq 'to-move' })
if ($mode -eq 'apply' -and $moving.Count -gt 0) {
    if (-not $elevated) {
        Write-PreventLog 'not elevated: run as an administrator or as SYSTEM to move the dynamic range' 'ERROR'
        $exitCode = 3
    } else {
        foreach ($item in $moving) {
            try {
                Set-DynamicRange $item.family
                $item.status = 'moved'
                $item.reason = ('moved from {0}-{1}; ranges reserved before stay until winnat restarts or the host reboots' -f $item.found_start, ($item.found_start + $item.found_count - 1))
            } catch {
                Write-PreventLog ('moving the dynamic range failed: ' + $_.Exception.Message) 'ERROR'
                $item.status = 'failed'
                $item.reason = $_.Exception.Message
                $exitCode = 1
            }
        }
    }
}
foreach ($item in $dynamic) {
    $level = 'INFO'
    if ($item.status -eq 'failed') { $level = 'ERROR' }
    Write-PreventLog ('TCP dynamic range ({0}): {1} ({2})' -f $item.family, $item.status, $item.reason) $level
}
#endregion

foreach ($state in $states) {
    $level = 'INFO'
    if (@('protected', 'reserved', 'to-reserve') -notcontains $state.status) { $level = 'WARN' }
    Write-PreventLog ('TCP {0}-{1}: {2} ({3})' -f $state.start, $state.end, $state.status, $state.reason) $level
}
$unprotected = @($states | Where-Object { $_.status -ne 'protected' -and $_.status -ne 'reserved' })
$needPerson = @($states | Where-Object { $_.status -eq 'held' -or $_.status -eq 'needs-hyperv-sequence' })
if ($exitCode -eq 0) {
    if ($mode -eq 'detect' -and $unprotected.Count -gt 0) { $exitCode = 1 }
    elseif ($needPerson.Count -gt 0) { $exitCode = 2 }
    elseif ($mode -eq 'apply' -and $unprotected.Count -gt 0) { $exitCode = 1 }
}
#region move-dynamic-range
# Detect is done only when the range is where it was asked to be too.
if ($exitCode -eq 0 -and $mode -eq 'detect' -and $moving.Count -gt 0) { $exitCode = 1 }
#endregion

$result = [ordered]@{
    format = 'portfleet-prevent'
    version = [int]$ScriptVersion
    host = $env:COMPUTERNAME
    taken_at = (Get-Date).ToUniversalTime().ToString('o')
    mode = $mode
    elevated = $elevated
    applied = $applied
    exit_code = $exitCode
    ports = @($states | ForEach-Object {
        [ordered]@{ start = $_.start; end = $_.end; status = $_.status; reason = $_.reason }
    })
}
#region move-dynamic-range
$result['dynamic'] = @($dynamic | ForEach-Object {
    [ordered]@{
        family = $_.family; start = $_.start; count = $_.count; found_start = $_.found_start
        found_count = $_.found_count; status = $_.status; reason = $_.reason
    }
})
#endregion
$result | ConvertTo-Json -Depth 4
exit $exitCode
