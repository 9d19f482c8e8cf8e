package kubenode

// containerdConfig is the private containerd's configuration (containerd 1.6, Debian's; format
// %s: root, state, CNI conf dir). Its own root, state and sockets: Docker's containerd
// (/var/run/docker/containerd) is never involved.
const containerdConfig = `version = 2
root = "%[1]s"
state = "%[2]s"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "%[2]s/containerd.sock"
[ttrpc]
  address = "%[2]s/containerd.sock.ttrpc"
[debug]
  address = "%[2]s/debug.sock"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "%[1]s/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "` + PauseImage + `"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Machines that drop CAP_SYS_RESOURCE from every bounding set (ours do) cannot lower an
  # oom_score_adj, even as root: the sandbox's -998 fails in runc ("nsexec: failed to update
  # /proc/self/oom_score_adj: Permission denied"). This caps every score at containerd's own, as
  # for rootless containerd; probes are unaffected.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "%[4]s"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "%[3]s"
`

// kubeletConfig is the standalone kubelet's KubeletConfiguration (format: port, healthz port,
// containerd socket, manifest dir, kubelet root). No API server: anonymous AlwaysAllow on
// 127.0.0.1 only, static pods from the manifest dir.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %[1]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[2]d
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%[3]s
imageServiceEndpoint: unix://%[3]s
cgroupDriver: cgroupfs
cgroupsPerQOS: true
# cgroup v1 is accepted by 1.34 by default and from 1.35 only with this.
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
staticPodPath: %[4]s
fileCheckFrequency: 1s
syncFrequency: 10s
podLogsDir: %[5]s/pod-logs
volumePluginDir: %[5]s/volume-plugins
resolvConf: /etc/resolv.conf
serializeImagePulls: true
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
`

// cniConfig is loopback only: pods use the host's network, this just lets the runtime report
// NetworkReady.
const cniConfig = `{"cniVersion":"0.4.0","name":"kubenode-lo","plugins":[{"type":"loopback"}]}`

// sysctls are what the kubelet sets at start (setupKernelTunables and the keyring limits): saved
// by Start, restored by Stop.
var sysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// outsidePaths are what the kubelet may create outside its --root-dir (some hard-coded, such as
// the device-plugins socket directory): Stop removes those that did not exist before Start.
var outsidePaths = []string{"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/etc/kubernetes",
	"/run/kubelet", "/var/lib/cni", "/run/netns", "/usr/libexec/kubernetes"}
