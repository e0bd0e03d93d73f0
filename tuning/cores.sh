#!/usr/bin/env bash
# Puts shardcast's shards on their own cores and the NIC's interrupts on
# the others. Reads the topology (online CPUs, NUMA nodes, the NIC's IRQs
# and queues), prints a plan, and with --apply writes it:
#   /proc/irq/N/smp_affinity_list            every IRQ of the NIC -> IRQ cores
#   /sys/class/net/IF/queues/tx-Q/xps_cpus   shard cores -> their TX queue
#                                            (only with more than one TX queue)
#   /sys/class/net/IF/queues/rx-Q/rps_cpus   IRQ cores (only when there are
#                                            fewer RX queues than IRQ cores)
# Without --apply it only reads (a dry run). Nothing here persists across a
# reboot or a driver reload: run it from a unit after network-online.target.
#
# shardcast with `pin_cores = true` (or --pin-cores) puts shard k on the
# k-th online CPU in ascending order (shards/src/lib.rs, online_cpus_sorted),
# so shard cores are always the first `shards` online CPUs and the IRQ
# cores are taken from the end.
#
# Usage: tuning/cores.sh [--shards N] [--iface IF]... [--irq-cores LIST]
#                        [--root DIR] [--apply]
#   --shards N        shards to plan for (default: online CPUs - 1, at least 1)
#   --iface IF        interface(s) to move (default: every interface backed
#                     by a device, i.e. with /sys/class/net/IF/device)
#   --irq-cores LIST  CPUs for the NIC's interrupts, e.g. 7 or 6-7 (default:
#                     the online CPUs no shard runs on, else the last one)
#   --root DIR        read and write DIR/proc and DIR/sys instead of /proc
#                     and /sys (tests; also $SHARDCAST_TUNING_ROOT)
#   --apply           write the plan (root needed for the real /proc, /sys)
# Exit status: 0 planned (or applied), 1 bad arguments or unreadable
# topology, 2 --apply could not write some file (each one is named).
set -euo pipefail

ROOT="${SHARDCAST_TUNING_ROOT:-}"
SHARDS=""
IRQ_CORES_ARG=""
APPLY=0
IFACES=()

usage() {
    sed -n '18,29p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "cores.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --shards)
            [ $# -ge 2 ] || die "--shards needs a number"
            SHARDS="$2"
            shift 2
            ;;
        --iface)
            [ $# -ge 2 ] || die "--iface needs an interface name"
            IFACES+=("$2")
            shift 2
            ;;
        --irq-cores)
            [ $# -ge 2 ] || die "--irq-cores needs a CPU list such as 7 or 6-7"
            IRQ_CORES_ARG="$2"
            shift 2
            ;;
        --root)
            [ $# -ge 2 ] || die "--root needs a directory"
            ROOT="$2"
            shift 2
            ;;
        --apply)
            APPLY=1
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            die "unknown argument '$1' (see --help)"
            ;;
    esac
done

if [ -n "$ROOT" ] && [ ! -d "$ROOT" ]; then
    die "--root $ROOT is not a directory"
fi
SYS="$ROOT/sys"
PROC="$ROOT/proc"

# "0-3,5" -> "0 1 2 3 5"; dies naming the list when it is not one.
expand_list() {
    local list="$1" part lo hi out=() parts=()
    [ -n "$list" ] || die "empty CPU list"
    IFS=, read -r -a parts <<<"$list"
    for part in "${parts[@]}"; do
        if [[ "$part" =~ ^([0-9]+)-([0-9]+)$ ]]; then
            lo=${BASH_REMATCH[1]}
            hi=${BASH_REMATCH[2]}
            [ "$lo" -le "$hi" ] || die "CPU range '$part' in '$list' runs backwards"
            while [ "$lo" -le "$hi" ]; do
                out+=("$lo")
                lo=$((lo + 1))
            done
        elif [[ "$part" =~ ^[0-9]+$ ]]; then
            out+=("$part")
        else
            die "'$part' in CPU list '$list' is not a CPU number or range"
        fi
    done
    echo "${out[*]}"
}

# "0 1 2 3 5" (ascending) -> "0-3,5"
compress_list() {
    local text="" start="" prev="" c
    for c in "$@"; do
        if [ -z "$start" ]; then
            start=$c
        elif [ "$c" -ne $((prev + 1)) ]; then
            text+="$(range_text "$start" "$prev"),"
            start=$c
        fi
        prev=$c
    done
    [ -z "$start" ] || text+="$(range_text "$start" "$prev")"
    echo "$text"
}

range_text() {
    if [ "$1" -eq "$2" ]; then echo "$1"; else echo "$1-$2"; fi
}

# CPUs -> the kernel's hex mask format (32-bit groups, comma separated).
cpu_mask() {
    local c max=0 words=() i hex=""
    for c in "$@"; do
        [ "$c" -le "$max" ] || max=$c
    done
    for ((i = 0; i <= max / 32; i++)); do words[i]=0; done
    for c in "$@"; do
        words[c / 32]=$((words[c / 32] | (1 << (c % 32))))
    done
    for ((i = max / 32; i >= 0; i--)); do
        if [ -z "$hex" ]; then
            hex=$(printf '%x' "${words[i]}")
        else
            hex+=$(printf ',%08x' "${words[i]}")
        fi
    done
    echo "$hex"
}

contains() {
    local want="$1" c
    shift
    for c in "$@"; do
        [ "$c" != "$want" ] || return 0
    done
    return 1
}

# --- topology -----------------------------------------------------------
if [ -r "$SYS/devices/system/cpu/online" ]; then
    read -r -a CPUS <<<"$(expand_list "$(cat "$SYS/devices/system/cpu/online")")"
elif [ -z "$ROOT" ]; then
    n=$(getconf _NPROCESSORS_ONLN)
    read -r -a CPUS <<<"$(seq -s ' ' 0 $((n - 1)))"
else
    die "cannot read $SYS/devices/system/cpu/online"
fi
mapfile -t CPUS < <(printf '%s\n' "${CPUS[@]}" | sort -n)
NCPU=${#CPUS[@]}
[ "$NCPU" -gt 0 ] || die "no online CPU found"

if [ -z "$SHARDS" ]; then
    SHARDS=$((NCPU > 1 ? NCPU - 1 : 1))
fi
[[ "$SHARDS" =~ ^[0-9]+$ ]] || die "--shards '$SHARDS' is not a number"
[ "$SHARDS" -ge 1 ] || die "--shards must be at least 1 (shardcast's 0 means one per online CPU: pass that count)"

# Shard k on the k-th online CPU, wrapping like shardcast does.
declare -A SHARDS_ON=()
SHARD_CORES=()
for ((k = 0; k < SHARDS; k++)); do
    cpu=${CPUS[k % NCPU]}
    SHARDS_ON[$cpu]="${SHARDS_ON[$cpu]:+${SHARDS_ON[$cpu]} }$k"
    contains "$cpu" "${SHARD_CORES[@]}" || SHARD_CORES+=("$cpu")
done

IRQ_SHARED=0
if [ -n "$IRQ_CORES_ARG" ]; then
    read -r -a IRQ_CORES <<<"$(expand_list "$IRQ_CORES_ARG")"
    for c in "${IRQ_CORES[@]}"; do
        contains "$c" "${CPUS[@]}" || die "--irq-cores: CPU $c is not online (online: $(compress_list "${CPUS[@]}"))"
        if contains "$c" "${SHARD_CORES[@]}"; then IRQ_SHARED=1; fi
    done
else
    IRQ_CORES=()
    for c in "${CPUS[@]}"; do
        contains "$c" "${SHARD_CORES[@]}" || IRQ_CORES+=("$c")
    done
    if [ ${#IRQ_CORES[@]} -eq 0 ]; then
        IRQ_CORES=("${CPUS[NCPU - 1]}")
        IRQ_SHARED=1
    fi
fi
IRQ_LIST=$(compress_list "${IRQ_CORES[@]}")

echo "shardcast core plan ($([ "$APPLY" -eq 1 ] && echo "applying" || echo "dry run: --apply writes it"))"
echo "topology: $NCPU online CPU(s): $(compress_list "${CPUS[@]}")"
for node in "$SYS"/devices/system/node/node[0-9]*; do
    [ -r "$node/cpulist" ] || continue
    echo "  NUMA $(basename "$node"): CPUs $(cat "$node/cpulist")"
done
echo "shards: $SHARDS, pinned (shard k on the k-th online CPU)"
for c in "${CPUS[@]}"; do
    what=""
    [ -z "${SHARDS_ON[$c]:-}" ] || what="shard ${SHARDS_ON[$c]}"
    if contains "$c" "${IRQ_CORES[@]}"; then
        what="${what:+$what + }NIC interrupts"
    fi
    echo "  core $c: ${what:-idle (no shard, no NIC interrupt)}"
done
if [ "$SHARDS" -gt "$NCPU" ]; then
    echo "  note: $SHARDS shards on $NCPU CPUs: some cores run two shards; plan shards <= $NCPU"
fi
if [ "$IRQ_SHARED" -eq 1 ]; then
    echo "  note: NIC interrupts share core(s) $IRQ_LIST with a shard ($NCPU CPU(s), $SHARDS shard(s)); with one core to spare, plan shards = $((NCPU > 1 ? NCPU - 1 : 1))"
fi
echo "config: shards = $SHARDS and pin_cores = true in shardcast.toml (or: shardcast --shards $SHARDS --pin-cores)"

# --- NIC interrupts and queues -------------------------------------------
if [ ${#IFACES[@]} -eq 0 ]; then
    for d in "$SYS"/class/net/*; do
        [ -e "$d/device" ] || continue
        IFACES+=("$(basename "$d")")
    done
fi

# "N: counts... name" -> name, from /proc/interrupts.
irq_name() {
    [ -r "$PROC/interrupts" ] || { echo "?"; return; }
    awk -v irq="$1:" '$1 == irq { print $NF; exit }' "$PROC/interrupts"
}

# The IRQs of one interface, one a line: the device's MSI vectors (for a
# virtio NIC those of the virtio device's PCI parent, without its config
# vector), else the /proc/interrupts lines that name the interface.
nic_irqs() {
    local iface="$1" dev msi="" n name
    dev=$(readlink -f "$SYS/class/net/$iface/device" 2>/dev/null || true)
    if [ -n "$dev" ] && [ -d "$dev/msi_irqs" ]; then
        msi="$dev/msi_irqs"
    elif [ -n "$dev" ] && [[ "$(basename "$dev")" == virtio* ]] && [ -d "$dev/../msi_irqs" ]; then
        msi="$dev/../msi_irqs"
    fi
    if [ -n "$msi" ]; then
        for n in "$msi"/*; do
            [ -e "$n" ] || continue
            n=$(basename "$n")
            name=$(irq_name "$n")
            [[ "$name" == *config* ]] && continue
            echo "$n"
        done | sort -n
    elif [ -r "$PROC/interrupts" ]; then
        awk -v ifc="$iface" 'index($NF, ifc) == 1 { sub(":", "", $1); print $1 }' "$PROC/interrupts"
    fi
}

FAILED=()
write_file() {
    local value="$1" file="$2"
    if [ "$APPLY" -eq 1 ]; then
        if { printf '%s\n' "$value" >"$file"; } 2>/dev/null; then
            echo "    wrote $value to $file"
        else
            echo "    FAILED to write $value to $file" >&2
            FAILED+=("$file")
        fi
    fi
}

ANY_IRQ=0
if [ ${#IFACES[@]} -eq 0 ]; then
    echo "NIC: no interface backed by a device under $SYS/class/net (a container's veth or a"
    echo "  virtual-only machine): the NIC's interrupts, if any, belong to the host; nothing to move"
fi
for iface in "${IFACES[@]}"; do
    qdir="$SYS/class/net/$iface/queues"
    [ -d "$SYS/class/net/$iface" ] || die "--iface $iface: no $SYS/class/net/$iface"
    rx=()
    tx=()
    for q in "$qdir"/rx-*; do [ -e "$q" ] && rx+=("$q"); done
    for q in "$qdir"/tx-*; do [ -e "$q" ] && tx+=("$q"); done
    node="?"
    for f in "$SYS/class/net/$iface/device/numa_node" "$SYS/class/net/$iface/device/../numa_node"; do
        if [ -r "$f" ]; then
            node=$(cat "$f")
            break
        fi
    done
    echo "interface $iface: ${#rx[@]} RX / ${#tx[@]} TX queue(s), NUMA node $node"
    if [ "$node" != "?" ] && [ "$node" -ge 0 ] && [ -r "$SYS/devices/system/node/node$node/cpulist" ]; then
        read -r -a local_cpus <<<"$(expand_list "$(cat "$SYS/devices/system/node/node$node/cpulist")")"
        for c in "${IRQ_CORES[@]}"; do
            contains "$c" "${local_cpus[@]}" || echo "  note: IRQ core $c is not on the NIC's node $node: pick --irq-cores from $(cat "$SYS/devices/system/node/node$node/cpulist")"
        done
    fi
    mapfile -t irqs < <(nic_irqs "$iface")
    if [ ${#irqs[@]} -eq 0 ]; then
        echo "  no interrupts of $iface visible (no MSI vectors, no /proc/interrupts line naming it): nothing to move"
    fi
    for n in "${irqs[@]}"; do
        ANY_IRQ=1
        now="?"
        [ -r "$PROC/irq/$n/smp_affinity_list" ] && now=$(cat "$PROC/irq/$n/smp_affinity_list")
        echo "  irq $n $(irq_name "$n"): CPUs $now -> $IRQ_LIST"
        write_file "$IRQ_LIST" "$PROC/irq/$n/smp_affinity_list"
    done
    # XPS: a shard sends from its own core; give each TX queue the shard
    # cores that use it, so two shards do not contend for one queue's lock.
    if [ ${#tx[@]} -gt 1 ]; then
        for ((q = 0; q < ${#tx[@]}; q++)); do
            cores=()
            for ((i = 0; i < ${#SHARD_CORES[@]}; i++)); do
                [ $((i % ${#tx[@]})) -eq "$q" ] && cores+=("${SHARD_CORES[i]}")
            done
            [ ${#cores[@]} -gt 0 ] || continue
            echo "  XPS tx-$q: shard core(s) $(compress_list "${cores[@]}") (mask $(cpu_mask "${cores[@]}"))"
            write_file "$(cpu_mask "${cores[@]}")" "$qdir/tx-$q/xps_cpus"
        done
    elif [ ${#tx[@]} -eq 1 ]; then
        echo "  XPS: one TX queue, every core sends on it: nothing to map"
    fi
    # RPS: only worth it when fewer RX queues than IRQ cores take the
    # interrupts; then spread the receive work over the IRQ cores (never
    # the shard cores). RFS would steer it to the reading core, i.e. onto
    # the shards: leave rps_sock_flow_entries at 0.
    if [ ${#rx[@]} -gt 0 ] && [ ${#rx[@]} -lt ${#IRQ_CORES[@]} ] && [ "$IRQ_SHARED" -eq 0 ]; then
        for q in "${rx[@]}"; do
            echo "  RPS $(basename "$q"): IRQ cores $IRQ_LIST (mask $(cpu_mask "${IRQ_CORES[@]}"))"
            write_file "$(cpu_mask "${IRQ_CORES[@]}")" "$q/rps_cpus"
        done
    elif [ ${#rx[@]} -gt 0 ]; then
        echo "  RPS: off (${#rx[@]} RX queue(s) for ${#IRQ_CORES[@]} IRQ core(s): receive work stays on the core its interrupt lands on); no RFS"
    fi
done

if [ -z "$ROOT" ]; then
    if pgrep -x irqbalance >/dev/null 2>&1; then
        echo "irqbalance: RUNNING: it rewrites smp_affinity every 10 s and undoes this plan. Stop it, or add"
        echo "  IRQBALANCE_BANNED_CPULIST=$(compress_list "${SHARD_CORES[@]}") to /etc/default/irqbalance and restart it"
    else
        echo "irqbalance: not running (if you install it, ban the shard cores: IRQBALANCE_BANNED_CPULIST=$(compress_list "${SHARD_CORES[@]}"))"
    fi
fi
if [ "$ANY_IRQ" -eq 0 ] && [ ${#IFACES[@]} -gt 0 ]; then
    echo "no NIC interrupt to move on this machine; the shard plan above still holds"
fi

if [ ${#FAILED[@]} -gt 0 ]; then
    echo "cores.sh: --apply could not write ${#FAILED[@]} file(s): ${FAILED[*]} (root? a kernel-managed IRQ refuses affinity changes)" >&2
    exit 2
fi
exit 0
