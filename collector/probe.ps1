# portfleet probe: what reserves ports on one Windows host, and what could explain it, as one
# probe document (schema portfleet.probe/1). Windows PowerShell 5.1 or PowerShell 7.
# Read-only: the one thing it may write is -OutFile. Each section is guarded, so a failure becomes
# an entry in "errors" and the rest still arrives. Numbers, HRESULTs and enum names decide, never
# localized text; messages are kept for humans only.
param(
    [string]$OutFile,
    [switch]$NoBindSweep,
    [switch]$SweepUdp,
    [int]$UpdateHistoryLimit = 500
)

# Progress records would reach WinRM's stderr as CLIXML even on success.
$ProgressPreference = 'SilentlyContinue'
$ErrorActionPreference = 'Stop'
# Constrained language forbids the .NET calls that build the document and its frame, so no
# section could ever be delivered: say so at once instead of failing half-way.
if ([string]$ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage') {
    throw ('portfleet probe: the session is in {0} mode; the probe needs FullLanguage' -f
        $ExecutionContext.SessionState.LanguageMode)
}
$probeVersion = '1.0.0'
$frameBegin = 'PORTFLEET-PROBE-BEGIN 1'
$frameEnd = 'PORTFLEET-PROBE-END'
$frameWidth = 76
$clock = [Diagnostics.Stopwatch]::StartNew()
# Custom date formats follow the current culture's calendar (a Thai host counts Buddhist years).
$invariant = [Globalization.CultureInfo]::InvariantCulture
$probeErrors = New-Object 'System.Collections.Generic.List[object]'
$doc = [ordered]@{
    schema        = 'portfleet.probe/1'
    probe_version = $probeVersion
    taken_at      = [DateTimeOffset]::Now.ToString('o', $invariant)
    duration_ms   = $null
    host          = [ordered]@{
        name          = [string]$env:COMPUTERNAME
        elevated      = $null
        language_mode = [string]$ExecutionContext.SessionState.LanguageMode
    }
    raw           = [ordered]@{}
}
if ($doc['host']['name'] -eq '') { $doc['host']['name'] = [Environment]::MachineName }

# HRESULTs as the signed 32-bit numbers .NET reports (a test checks each against its hex).
$hrElevationRequired = -2147024156  # 0x800702E4 ERROR_ELEVATION_REQUIRED: DISM, filtered token
$hrAccessDenied = @(-2147024891, -2147217405)  # 0x80070005 E_ACCESSDENIED, 0x80041003 WMI's
# 0x800711C7 and 0x800704EC: application control (WDAC, AppLocker) refused what Add-Type built
$hrBlockedByPolicy = @(-2147020345, -2147023636)

function Get-ProbeErrorCode($ErrorRecord) {
    # By exception type and HRESULT, never by the message: it is localized text. It runs inside
    # catch blocks, so it must not throw.
    try {
        $chain = New-Object 'System.Collections.Generic.List[object]'
        for ($e = $ErrorRecord.Exception; $null -ne $e; $e = $e.InnerException) { $chain.Add($e) }
        foreach ($e in $chain) {
            if ($e -is [Management.Automation.CommandNotFoundException]) { return 'cmdlet_missing' }
        }
        foreach ($e in $chain) {
            $hresult = $e.HResult
            $typeName = $e.GetType().FullName
            if ($e -is [TimeoutException]) { return 'timeout' }
            if ($hresult -eq $hrElevationRequired) { return 'not_elevated' }
            if ($hrBlockedByPolicy -contains $hresult) { return 'constrained_language' }
            $denied = ($e -is [UnauthorizedAccessException]) -or
                ($e -is [Security.SecurityException]) -or
                ($hrAccessDenied -contains $hresult) -or
                (($e -is [ComponentModel.Win32Exception]) -and ($e.NativeErrorCode -eq 5)) -or
                (($typeName -eq 'Microsoft.Management.Infrastructure.CimException') -and
                    ([string]$e.NativeErrorCode -eq 'AccessDenied')) -or
                (($typeName -eq 'System.Management.ManagementException') -and
                    ([string]$e.ErrorCode -eq 'AccessDenied'))
            # Denied without an elevated token is best explained by the missing elevation.
            if ($denied -and $doc['host']['elevated'] -eq $false) { return 'not_elevated' }
            if ($denied) { return 'access_denied' }
        }
    } catch {
        return 'exception'
    }
    return 'exception'
}

function ConvertTo-ProbeError([string]$SectionName, $ErrorRecord) {
    $errorCode = Get-ProbeErrorCode $ErrorRecord
    $message = [string]$ErrorRecord.Exception.Message
    return [ordered]@{ section = $SectionName; code = $errorCode; message = $message }
}

function Invoke-ProbeSection([string]$SectionName, [scriptblock]$SectionBody) {
    # Sections store into $doc themselves: a value returned through the pipeline loses its
    # one-element arrays, and stray output must never reach stdout.
    try {
        $ErrorActionPreference = 'Stop'
        $null = & $SectionBody
    } catch {
        $probeErrors.Add((ConvertTo-ProbeError $SectionName $_))
    }
}

function ConvertTo-NullableString($Value) {
    # [string]$null is '', and '' says nothing: both become null.
    if ($null -eq $Value -or ([string]$Value).Trim() -eq '') { return $null }
    return [string]$Value
}

function ConvertTo-NullableInt($Value) {
    # [int]$null is 0, which would be a lie.
    if ($null -eq $Value -or ([string]$Value).Trim() -eq '') { return $null }
    return [long]$Value
}

function ConvertTo-IsoTime($Value) {
    # 'o' is culture-invariant and keeps the offset; WMI's unspecified times are local times.
    if ($null -eq $Value) { return $null }
    $when = [DateTime]$Value
    if ($when.Kind -eq 'Unspecified') { $when = [DateTime]::SpecifyKind($when, 'Local') }
    return ([DateTimeOffset]$when).ToString('o', $invariant)
}

function ConvertFrom-CimTime($Value) {
    # Get-CimInstance gives a DateTime, Get-WmiObject the CIM string yyyymmddHHMMSS.mmmmmmsUUU.
    if ($Value -is [DateTime]) { return $Value }
    if ($null -eq (ConvertTo-NullableString $Value)) { return $null }
    return [Management.ManagementDateTimeConverter]::ToDateTime([string]$Value)
}

function Get-ProbeCimInstance([string]$ClassName) {
    # Get-WmiObject (absent from PowerShell 7) only when CIM itself fails.
    try { Get-CimInstance -ClassName $ClassName } catch { Get-WmiObject -Class $ClassName }
}

function Get-RegistryValue([string]$SubKey, [string]$Name) {
    # HKLM in its 64-bit view, so a 32-bit PowerShell still reads the real SOFTWARE hive. A missing
    # key or value is null; a denied one throws.
    $base = [Microsoft.Win32.RegistryKey]::OpenBaseKey('LocalMachine', 'Registry64')
    try {
        $key = $base.OpenSubKey($SubKey)
        if ($null -eq $key) { return $null }
        try { return $key.GetValue($Name) } finally { $key.Close() }
    } finally {
        $base.Close()
    }
}

function Get-NativeText([scriptblock]$NativeCall) {
    # Under 'Stop' Windows PowerShell turns each redirected stderr line into a terminating error:
    # take stderr as records instead, and let the exit code decide.
    $ErrorActionPreference = 'Continue'
    $items = @(& $NativeCall 2>&1)
    $exitCode = $LASTEXITCODE
    $stdout = New-Object 'System.Collections.Generic.List[string]'
    foreach ($item in $items) {
        $isRecord = $item -is [Management.Automation.ErrorRecord]
        if ($isRecord -and $item.Exception -is [Management.Automation.CommandNotFoundException]) {
            throw $item.Exception
        }
        if (-not $isRecord) { $stdout.Add([string]$item) }
    }
    if ($exitCode -ne 0) {
        $said = $items -join ' '
        throw ('{0} exited with code {1}: {2}' -f $NativeCall.ToString().Trim(), $exitCode, $said)
    }
    return ($stdout -join "`r`n")
}

# 1. Host facts. Elevation first: the error codes of later sections depend on it.
Invoke-ProbeSection 'host' {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal $identity
    # BUILTIN\Administrators by SID: the group's name is localized.
    $administrators = New-Object Security.Principal.SecurityIdentifier 'S-1-5-32-544'
    $doc['host']['elevated'] = $principal.IsInRole($administrators)
    $domain = [Net.NetworkInformation.IPGlobalProperties]::GetIPGlobalProperties().DomainName
    $doc['host']['domain'] = ConvertTo-NullableString $domain
    $culture = [Globalization.CultureInfo]::CurrentCulture.Name
    $doc['host']['culture'] = ConvertTo-NullableString $culture
    # The system's OEM code page; the console's is whatever WinRM asked for (437).
    $oem = Get-RegistryValue 'SYSTEM\CurrentControlSet\Control\Nls\CodePage' 'OEMCP'
    $doc['host']['oem_codepage'] = ConvertTo-NullableInt $oem
    $power = 'SYSTEM\CurrentControlSet\Control\Session Manager\Power'
    $hiberboot = Get-RegistryValue $power 'HiberbootEnabled'
    $doc['host']['fast_startup'] = $null
    if ($null -ne $hiberboot) { $doc['host']['fast_startup'] = ([int]$hiberboot -eq 1) }
}

Invoke-ProbeSection 'host.os' {
    $current = 'SOFTWARE\Microsoft\Windows NT\CurrentVersion'
    $displayVersion = ConvertTo-NullableString (Get-RegistryValue $current 'DisplayVersion')
    if ($null -eq $displayVersion) {
        $displayVersion = ConvertTo-NullableString (Get-RegistryValue $current 'ReleaseId')
    }
    # InstallDate is a DWORD of seconds since 1970-01-01 UTC.
    $installSeconds = Get-RegistryValue $current 'InstallDate'
    $installDate = $null
    if ($null -ne $installSeconds) {
        $epoch = New-Object DateTimeOffset 1970, 1, 1, 0, 0, 0, ([TimeSpan]::Zero)
        $installDate = $epoch.AddSeconds([double]$installSeconds).ToString('o', $invariant)
    }
    $doc['host']['os'] = [ordered]@{
        product         = ConvertTo-NullableString (Get-RegistryValue $current 'ProductName')
        edition         = ConvertTo-NullableString (Get-RegistryValue $current 'EditionID')
        display_version = $displayVersion
        build           = ConvertTo-NullableInt (Get-RegistryValue $current 'CurrentBuild')
        ubr             = ConvertTo-NullableInt (Get-RegistryValue $current 'UBR')
        install_date    = $installDate
    }
}

Invoke-ProbeSection 'host.last_boot' {
    $os = @(Get-ProbeCimInstance 'Win32_OperatingSystem')[0]
    $doc['host']['last_boot'] = ConvertTo-IsoTime (ConvertFrom-CimTime $os.LastBootUpTime)
}

Invoke-ProbeSection 'host.bios' {
    $bios = @(Get-ProbeCimInstance 'Win32_BIOS')[0]
    $released = ConvertFrom-CimTime $bios.ReleaseDate
    $day = $null
    # Firmware dates are midnight UTC: read in UTC, a western offset would give the day before.
    if ($null -ne $released) {
        $day = $released.ToUniversalTime().ToString('yyyy-MM-dd', $invariant)
    }
    $doc['host']['bios'] = [ordered]@{
        manufacturer = ConvertTo-NullableString $bios.Manufacturer
        version      = ConvertTo-NullableString $bios.SMBIOSBIOSVersion
        release_date = $day
    }
}

# 2. Raw text of the commands whose output only exists as text.
$nativeCommands = [ordered]@{
    excluded_ipv4_tcp    = { netsh.exe int ipv4 show excludedportrange protocol=tcp }
    excluded_ipv4_udp    = { netsh.exe int ipv4 show excludedportrange protocol=udp }
    excluded_ipv6_tcp    = { netsh.exe int ipv6 show excludedportrange protocol=tcp }
    excluded_ipv6_udp    = { netsh.exe int ipv6 show excludedportrange protocol=udp }
    dynamicport_ipv4_tcp = { netsh.exe int ipv4 show dynamicport tcp }
    dynamicport_ipv4_udp = { netsh.exe int ipv4 show dynamicport udp }
    dynamicport_ipv6_tcp = { netsh.exe int ipv6 show dynamicport tcp }
    dynamicport_ipv6_udp = { netsh.exe int ipv6 show dynamicport udp }
    netstat              = { netstat.exe -ano }
}
# Native programs write in the console code page (437 under WinRM: a Japanese host's text would
# come back as '?') and PowerShell decodes them with [Console]::OutputEncoding. UTF-8 on both sides
# keeps any display language; the old encoding is back before the frame is printed.
$savedEncoding = $null
try {
    $savedEncoding = [Console]::OutputEncoding
    [Console]::OutputEncoding = New-Object Text.UTF8Encoding $false
} catch {
    $probeErrors.Add((ConvertTo-ProbeError 'raw.encoding' $_))
}
try {
    foreach ($rawKey in @($nativeCommands.Keys)) {
        Invoke-ProbeSection "raw.$rawKey" {
            $doc['raw'][$rawKey] = Get-NativeText ($nativeCommands[$rawKey])
        }
    }
} finally {
    # A failed restore harms nothing the document depends on: the frame is ASCII.
    if ($null -ne $savedEncoding) { try { [Console]::OutputEncoding = $savedEncoding } catch { } }
}

# 3. The bind sweep, compiled: 65535 exceptions through PowerShell would take far too long.
# C# 5 only: Windows PowerShell compiles with the .NET Framework's CodeDOM compiler.
$bindSweepSource = @'
using System.Collections.Generic;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Portfleet {
    public sealed class SweepResult {
        public int[][] Runs;
        public long DurationMs;
    }

    public static class BindSweep {
        // Bind every port once with an exclusive wildcard socket and close it: no listen, no
        // connect, nothing left behind. Failing ports come back as runs of [first, last, code]
        // with the winsock error (10013 reserved, 10048 in use, any other as it is).
        public static SweepResult Run(bool ipv6, bool udp) {
            AddressFamily family = ipv6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
            IPAddress address = ipv6 ? IPAddress.IPv6Any : IPAddress.Any;
            SocketType socketType = udp ? SocketType.Dgram : SocketType.Stream;
            ProtocolType protocol = udp ? ProtocolType.Udp : ProtocolType.Tcp;
            List<int[]> runs = new List<int[]>();
            Stopwatch watch = Stopwatch.StartNew();
            for (int port = 1; port <= 65535; port++) {
                int code = 0;
                Socket socket = new Socket(family, socketType, protocol);
                try {
                    // Exclusive use makes the bind fail against any existing binding of the port.
                    socket.ExclusiveAddressUse = true;
                    if (ipv6) { socket.DualMode = false; }
                    socket.Bind(new IPEndPoint(address, port));
                } catch (SocketException error) {
                    code = error.ErrorCode;
                } finally {
                    socket.Close();
                }
                if (code == 0) { continue; }
                int[] last = runs.Count > 0 ? runs[runs.Count - 1] : null;
                if (last != null && last[1] == port - 1 && last[2] == code) {
                    last[1] = port;
                } else {
                    runs.Add(new int[] { port, port, code });
                }
            }
            SweepResult result = new SweepResult();
            result.Runs = runs.ToArray();
            result.DurationMs = watch.ElapsedMilliseconds;
            return result;
        }
    }
}
'@
if (-not $NoBindSweep) {
    Invoke-ProbeSection 'bind_sweep' {
        # A second run in the same session reuses the type the first one compiled.
        if ($null -eq ('Portfleet.BindSweep' -as [type])) {
            Add-Type -TypeDefinition $bindSweepSource -Language CSharp
        }
        $families = @('ipv4')
        if ([Net.Sockets.Socket]::OSSupportsIPv6) { $families += 'ipv6' }
        $protocols = @('tcp')
        if ($SweepUdp) { $protocols += 'udp' }
        $sweeps = New-Object 'System.Collections.Generic.List[object]'
        foreach ($protocol in $protocols) {
            foreach ($family in $families) {
                try {
                    $ipv6 = $family -eq 'ipv6'
                    $result = [Portfleet.BindSweep]::Run($ipv6, ($protocol -eq 'udp'))
                    $address = '0.0.0.0'
                    if ($ipv6) { $address = '::' }
                    $sweeps.Add([ordered]@{
                        protocol    = $protocol
                        family      = $family
                        address     = $address
                        exclusive   = $true
                        first_port  = 1
                        last_port   = 65535
                        duration_ms = [long]$result.DurationMs
                        failures    = $result.Runs
                    })
                } catch {
                    $probeErrors.Add((ConvertTo-ProbeError "bind_sweep.$protocol.$family" $_))
                }
            }
        }
        $doc['bind_sweep'] = $sweeps.ToArray()
    }
}

# 4. Listeners with their owning process. Without NetTCPIP the raw netstat still has them.
Invoke-ProbeSection 'listeners' {
    $processNames = @{}
    foreach ($process in @(Get-Process)) {
        $processNames[[int]$process.Id] = [string]$process.ProcessName
    }
    try {
        $endpoints = @(Get-NetTCPConnection -State Listen)
    } catch {
        # Having no listener at all is ObjectNotFound; a missing cmdlet is not that.
        if ($_.Exception -is [Management.Automation.CommandNotFoundException]) { throw }
        if ([string]$_.CategoryInfo.Category -ne 'ObjectNotFound') { throw }
        $endpoints = @()
    }
    $tcpCount = $endpoints.Count
    $endpoints += @(Get-NetUDPEndpoint)
    $doc['listeners'] = @(for ($i = 0; $i -lt $endpoints.Count; $i++) {
        $protocol = 'udp'
        if ($i -lt $tcpCount) { $protocol = 'tcp' }
        $owner = ConvertTo-NullableInt $endpoints[$i].OwningProcess
        $name = $null
        # Hashtable keys compare by type too: the UInt32 OwningProcess must become an int.
        if ($null -ne $owner) { $name = $processNames[[int]$owner] }
        [ordered]@{
            protocol = $protocol; address = [string]$endpoints[$i].LocalAddress
            port = [int]$endpoints[$i].LocalPort; pid = $owner; process = $name
        }
    })
}

# 5. Optional features. DISM needs an elevated token; Win32_OptionalFeature does not.
$featureNames = @('Microsoft-Hyper-V', 'Microsoft-Hyper-V-All', 'VirtualMachinePlatform',
    'Microsoft-Windows-Subsystem-Linux', 'Containers')
Invoke-ProbeSection 'features' {
    $features = $null
    if ($doc['host']['elevated'] -eq $true) {
        try {
            # One listing rather than -FeatureName per name: an unknown name is an error there.
            $features = @(foreach ($feature in @(Get-WindowsOptionalFeature -Online)) {
                if ($featureNames -contains $feature.FeatureName) {
                    $state = $feature.State.ToString()
                    [ordered]@{ name = [string]$feature.FeatureName; state = $state }
                }
            })
        } catch {
            $probeErrors.Add((ConvertTo-ProbeError 'features' $_))
        }
    } else {
        $probeErrors.Add([ordered]@{
            section = 'features'; code = 'not_elevated'
            message = 'DISM needs an elevated token; the states are from Win32_OptionalFeature'
        })
    }
    if ($null -eq $features) {
        $installStates = @{ 1 = 'Enabled'; 2 = 'Disabled'; 3 = 'Absent'; 4 = 'Unknown' }
        $features = @(foreach ($feature in @(Get-ProbeCimInstance 'Win32_OptionalFeature')) {
            if ($featureNames -contains $feature.Name) {
                $state = $installStates[[int]$feature.InstallState]
                if ($null -eq $state) { $state = 'Unknown' }
                [ordered]@{ name = [string]$feature.Name; state = $state }
            }
        })
    }
    $doc['features'] = $features
}

# 6. Services. One that is not installed is simply absent.
$serviceNames = @('vmms', 'hns', 'winnat', 'LxssManager', 'WslService', 'com.docker.service',
    'docker')
Invoke-ProbeSection 'services' {
    $installed = @(Get-Service -Name $serviceNames -ErrorAction SilentlyContinue)
    $doc['services'] = @(foreach ($service in $installed) {
        # ServiceController.StartType needs .NET Framework 4.6.1: a missing one stays null.
        $startType = $null
        try { $startType = $service.StartType.ToString() } catch { $startType = $null }
        [ordered]@{
            name       = [string]$service.Name
            status     = $service.Status.ToString()
            start_type = $startType
        }
    })
}

# 7. WinNAT instances, one entry per external port pool. HNS's own NATs may only show as pools.
Invoke-ProbeSection 'nat' {
    $nats = @(Get-NetNat)
    $pools = @()
    try {
        $pools = @(Get-NetNatExternalAddress)
    } catch {
        $probeErrors.Add((ConvertTo-ProbeError 'nat.pools' $_))
    }
    $prefixes = @{}
    foreach ($nat in $nats) {
        $prefix = $nat.InternalIPInterfaceAddressPrefix
        $prefixes[[string]$nat.Name] = ConvertTo-NullableString $prefix
    }
    $pooled = @{}
    $rows = @(foreach ($pool in $pools) {
        $pooled[[string]$pool.NatName] = $true
        [ordered]@{
            name            = [string]$pool.NatName
            internal_prefix = $prefixes[[string]$pool.NatName]
            port_start      = ConvertTo-NullableInt $pool.PortStart
            port_end        = ConvertTo-NullableInt $pool.PortEnd
        }
    })
    $unpooled = @(foreach ($nat in $nats) {
        if (-not $pooled.ContainsKey([string]$nat.Name)) {
            [ordered]@{ name = [string]$nat.Name; internal_prefix = $prefixes[[string]$nat.Name] }
        }
    })
    $doc['nat'] = @($rows) + @($unpooled)
}

# 8. Versions from the registry and file metadata: wsl.exe and docker.exe print localized text.
$doc['versions'] = [ordered]@{ docker = $null; wsl = $null; hns_excluded_port_range = $null }
Invoke-ProbeSection 'versions.docker' {
    $uninstall = 'SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\Docker Desktop'
    $docker = Get-RegistryValue $uninstall 'DisplayVersion'
    $doc['versions']['docker'] = ConvertTo-NullableString $docker
}
Invoke-ProbeSection 'versions.hns' {
    $hns = Get-RegistryValue 'SYSTEM\CurrentControlSet\Services\hns\State' 'EnableExcludedPortRange'
    $doc['versions']['hns_excluded_port_range'] = ConvertTo-NullableString $hns
}
Invoke-ProbeSection 'versions.wsl' {
    # The Store/MSI WSL puts wsl.exe under Program Files\WSL (the inbox WSL has no version).
    $programFiles = $env:ProgramW6432
    if (-not $programFiles) { $programFiles = $env:ProgramFiles }
    $wslExe = Join-Path $programFiles 'WSL\wsl.exe'
    if (Test-Path -LiteralPath $wslExe -PathType Leaf) {
        $version = [Diagnostics.FileVersionInfo]::GetVersionInfo($wslExe).ProductVersion
        $doc['versions']['wsl'] = ConvertTo-NullableString $version
    }
    if ($null -eq $doc['versions']['wsl']) {
        $package = 'MicrosoftCorporationII.WindowsSubsystemForLinux'
        # -AllUsers needs elevation; without it only the caller's own packages are visible.
        if ($doc['host']['elevated'] -eq $true) {
            $found = @(Get-AppxPackage -AllUsers -Name $package)
        } else {
            $found = @(Get-AppxPackage -Name $package)
        }
        $newest = $null
        foreach ($item in $found) {
            $version = [version]$item.Version
            if ($null -eq $newest -or $version -gt $newest) { $newest = $version }
        }
        if ($null -ne $newest) { $doc['versions']['wsl'] = $newest.ToString() }
    }
}

# 9. Hotfixes: CBS packages only; the update history below has the rest.
Invoke-ProbeSection 'hotfixes' {
    $doc['hotfixes'] = @(foreach ($hotfix in @(Get-HotFix)) {
        $kb = ConvertTo-NullableString $hotfix.HotFixID
        if ($null -eq $kb) { continue }
        # Type data parses InstalledOn from a locale string, and throws on some entries.
        $installedOn = $null
        try { $installedOn = $hotfix.InstalledOn } catch { $installedOn = $null }
        $day = $null
        if ($installedOn -is [DateTime]) { $day = $installedOn.ToString('yyyy-MM-dd', $invariant) }
        [ordered]@{
            kb = $kb; description = ConvertTo-NullableString $hotfix.Description
            installed_by = ConvertTo-NullableString $hotfix.InstalledBy; installed_on = $day
        }
    })
}

# 10. Windows Update history: read-only and synchronous, which WUA allows over WinRM.
Invoke-ProbeSection 'update_history' {
    $comObjects = New-Object 'System.Collections.Generic.List[object]'
    try {
        $session = New-Object -ComObject 'Microsoft.Update.Session'
        $comObjects.Add($session)
        $searcher = $session.CreateUpdateSearcher()
        $comObjects.Add($searcher)
        $take = [Math]::Min([int]$searcher.GetTotalHistoryCount(), $UpdateHistoryLimit)
        $entries = New-Object 'System.Collections.Generic.List[object]'
        if ($take -gt 0) {
            $history = $searcher.QueryHistory(0, $take)
            $comObjects.Add($history)
            foreach ($entry in $history) {
                $comObjects.Add($entry)
                $title = [string]$entry.Title
                $kb = $null
                if ($title -cmatch 'KB\d+') { $kb = $Matches[0] }
                # WUA history dates are UTC, handed over with an unspecified kind.
                $date = [DateTime]::SpecifyKind([DateTime]$entry.Date, 'Utc')
                $entries.Add([ordered]@{
                    date = $date.ToString('o', $invariant); title = $title; kb = $kb
                    operation = [int]$entry.Operation; result_code = [int]$entry.ResultCode
                    hresult = [int]$entry.HResult
                })
            }
        }
        $doc['update_history'] = $entries.ToArray()
    } finally {
        foreach ($comObject in $comObjects) {
            [void][Runtime.InteropServices.Marshal]::ReleaseComObject($comObject)
        }
    }
}

# 11. The document: JSON, then gzip + base64 between the markers of collector/framing.py.
$doc['errors'] = $probeErrors.ToArray()
$doc['duration_ms'] = [long]$clock.ElapsedMilliseconds
# -InputObject keeps one-element arrays whole; every date above is already a string.
$json = ConvertTo-Json -InputObject $doc -Depth 8 -Compress
$utf8 = New-Object Text.UTF8Encoding $false
if ($OutFile) {
    # .NET resolves a relative path against the process directory, not PowerShell's location.
    $target = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($OutFile)
    [IO.File]::WriteAllText($target, $json, $utf8)
    return
}
$bytes = $utf8.GetBytes($json)
$buffer = New-Object IO.MemoryStream
$compress = [IO.Compression.CompressionMode]::Compress
$gzip = New-Object IO.Compression.GZipStream -ArgumentList $buffer, $compress
$gzip.Write($bytes, 0, $bytes.Length)
# Closing writes the gzip trailer; a closed MemoryStream still hands out its bytes.
$gzip.Close()
$encoded = [Convert]::ToBase64String($buffer.ToArray())
$hash = [Security.Cryptography.SHA256]::Create().ComputeHash($bytes)
$digest = [BitConverter]::ToString($hash).Replace('-', '').ToLowerInvariant()
$lines = New-Object 'System.Collections.Generic.List[string]'
$lines.Add($frameBegin)
for ($at = 0; $at -lt $encoded.Length; $at += $frameWidth) {
    $lines.Add($encoded.Substring($at, [Math]::Min($frameWidth, $encoded.Length - $at)))
}
$lines.Add($frameEnd + ' ' + $digest + ' ' + $bytes.Length.ToString($invariant))
# Straight to stdout, ASCII only: the host's formatting could wrap the long END line.
[Console]::Out.Write(($lines -join "`r`n") + "`r`n")
[Console]::Out.Flush()
