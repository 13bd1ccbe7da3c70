// Command controlplane starts a throw-away Kubernetes control plane (etcd +
// kube-apiserver, no controllers) for integration tests, using envtest.
//
//	controlplane --bin-dir DIR --state-dir DIR [--crd-dir DIR] [--watch-stdin=false]
//
// Contract: one launcher per state dir. Writes STATE/kubeconfig (0600, admin in group system:masters) and
// STATE/state.json, then prints exactly one line "READY <kubeconfig>" to stdout.
// After READY, each line on stdin is a fault to inject (chaos tests), answered by one line
// "OK <command> <detail>" or "ERR <command>: <why>" on stdout:
//
//	restart kube-apiserver   SIGTERM it (SIGKILL after 2 s), start it again (same port, certs,
//	                         etcd), wait for /readyz
//	restart etcd             the same for etcd (same data dir), then wait for the API server
//	compact                  compact etcd at its current revision (detail: the revision)
//
// It stops on SIGTERM/SIGINT/SIGHUP or EOF on stdin, kills its children
// (each runs in its own process group), removes its temp data, kubeconfig and
// state.json, and exits 0 (1 if it failed or was stopped before READY).
// Child logs go to STATE/etcd.log and STATE/kube-apiserver.log.
//
// envtest starts etcd/kube-apiserver through symlinks to this binary; in that
// role (argv[0] base name + wrapEnv) it sets PR_SET_PDEATHSIG=SIGKILL and execs
// the real binary, so the children die even if the launcher is SIGKILLed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const (
	startTimeout = 120 * time.Second
	wrapEnv      = "PANOPTES_CONTROLPLANE_WRAP" // "<real bin dir>|<launcher pid>"
)

type state struct {
	Server      string `json:"server"`
	Kubeconfig  string `json:"kubeconfig"`
	LauncherPID int    `json:"launcher_pid"`
	ChildPIDs   []int  `json:"child_pids"`
	RunDir      string `json:"run_dir"`
}

func main() {
	if spec := os.Getenv(wrapEnv); spec != "" {
		execChild(spec)
	}
	os.Exit(run())
}

// execChild replaces this process by the real etcd/kube-apiserver, which then
// gets SIGKILL when the launcher thread that started it dies.
func execChild(spec string) {
	runtime.LockOSThread() // prctl and exec must happen on the same thread
	dir, ppid, _ := strings.Cut(spec, "|")
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); e != 0 {
		logf("prctl: %v", e)
		os.Exit(1)
	}
	if strconv.Itoa(os.Getppid()) != ppid { // the launcher died before prctl
		os.Exit(1)
	}
	os.Unsetenv(wrapEnv)
	target := filepath.Join(dir, filepath.Base(os.Args[0]))
	err := syscall.Exec(target, append([]string{target}, os.Args[1:]...), os.Environ())
	logf("exec %s: %v", target, err)
	os.Exit(1)
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "controlplane: "+format+"\n", a...) }

func run() int {
	fs := flag.NewFlagSet("controlplane", flag.ExitOnError) // not flag.CommandLine: controller-runtime adds --kubeconfig there
	binDir := fs.String("bin-dir", "", "directory holding etcd, kube-apiserver, kubectl (required)")
	stateDir := fs.String("state-dir", "", "directory for kubeconfig, state.json, logs and temp data (required)")
	crdDir := fs.String("crd-dir", "", "optional directory of CRD YAML files to install and wait for")
	watchStdin := fs.Bool("watch-stdin", true, "stop when stdin reaches EOF (give it a pipe; a shell user with stdin=/dev/null should pass false)")
	_ = fs.Parse(os.Args[1:])
	if *binDir == "" || *stateDir == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	bin, _ := filepath.Abs(*binDir)
	st, _ := filepath.Abs(*stateDir)
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			logf("missing binary: %v", err)
			return 2
		}
	}

	// Stop requests: signals, or EOF on stdin (a crashed parent closes our stdin).
	stop := make(chan string, 4)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() { s := <-sigs; stop <- s.String() }()
	// Fault commands arrive on stdin; they run only after READY (see below).
	commands := make(chan string)
	if *watchStdin {
		go func() {
			lines := bufio.NewScanner(os.Stdin)
			for lines.Scan() {
				if cmd := strings.TrimSpace(lines.Text()); cmd != "" {
					commands <- cmd
				}
			}
			stop <- "stdin EOF"
		}()
	}

	if err := os.MkdirAll(st, 0o700); err != nil {
		logf("%v", err)
		return 1
	}
	// A SIGKILLed launcher cannot clean up: drop run dirs left behind by earlier runs.
	old, _ := filepath.Glob(filepath.Join(st, "run-*"))
	for _, d := range old {
		_ = os.RemoveAll(d)
	}
	runDir, err := os.MkdirTemp(st, "run-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer os.RemoveAll(runDir)
	// envtest creates the etcd data dir and the apiserver cert dir with
	// os.MkdirTemp("", ...): point TMPDIR at our run dir so everything lands there.
	os.Setenv("TMPDIR", runDir)

	etcdLog, _ := os.Create(filepath.Join(st, "etcd.log"))
	apiLog, _ := os.Create(filepath.Join(st, "kube-apiserver.log"))
	defer etcdLog.Close()
	defer apiLog.Close()

	te := &envtest.Environment{
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
		ErrorIfCRDPathMissing:    true,
	}
	self, err := os.Executable()
	wrapDir := filepath.Join(runDir, "bin")
	if err == nil {
		err = os.Mkdir(wrapDir, 0o700)
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if err == nil {
			err = os.Symlink(self, filepath.Join(wrapDir, b))
		}
	}
	if err != nil {
		logf("%v", err)
		return 1
	}
	os.Setenv(wrapEnv, bin+"|"+strconv.Itoa(os.Getpid()))
	te.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(wrapDir, "etcd"), Out: etcdLog, Err: etcdLog}
	te.ControlPlane.APIServer = &envtest.APIServer{Path: filepath.Join(wrapDir, "kube-apiserver"), Out: apiLog, Err: apiLog}
	te.ControlPlane.KubectlPath = filepath.Join(bin, "kubectl")
	if *crdDir != "" {
		te.CRDDirectoryPaths = []string{*crdDir}
	}

	began := time.Now()
	started := make(chan error, 1)
	go func() { _, err := te.Start(); started <- err }()
	select {
	case err = <-started:
	case why := <-stop:
		// envtest.Start cannot be cancelled and retries: keep killing what it
		// spawns until it gives up (or succeeds), then stop what is left.
		logf("stop requested (%s) before ready; killing children", why)
		for done := false; !done; {
			killChildren(syscall.SIGKILL)
			select {
			case <-started:
				done = true
			case <-time.After(50 * time.Millisecond):
			}
		}
		_ = te.Stop()
		killChildren(syscall.SIGKILL)
		return 1
	}
	if err == nil {
		err = waitReady(te)
	}
	if err != nil {
		logf("start failed: %v (see %s/kube-apiserver.log)", err, st)
		_ = te.Stop()
		return 1
	}

	kubeconfig := filepath.Join(st, "kubeconfig")
	s := state{Server: strings.TrimSuffix(te.Config.Host, "/"), Kubeconfig: kubeconfig, LauncherPID: os.Getpid(), ChildPIDs: childPIDs(), RunDir: runDir}
	sj, _ := json.MarshalIndent(s, "", "  ")
	if err = writeAtomic(kubeconfig, te.KubeConfig); err == nil {
		err = writeAtomic(filepath.Join(st, "state.json"), append(sj, '\n'))
	}
	if err != nil {
		logf("%v", err)
		_ = te.Stop()
		return 1
	}
	logf("ready in %.1fs: %s (children %v)", time.Since(began).Seconds(), s.Server, s.ChildPIDs)
	fmt.Printf("READY %s\n", kubeconfig)

	faults := &faults{te: te, wrapDir: wrapDir, etcdLog: etcdLog, apiLog: apiLog, state: s}
	var why string
	for why == "" {
		select {
		case why = <-stop:
		case cmd := <-commands:
			detail, err := faults.run(cmd)
			if err != nil {
				fmt.Printf("ERR %s: %v\n", cmd, err)
			} else {
				fmt.Printf("OK %s %s\n", cmd, detail)
			}
		}
	}
	logf("stopping (%s)", why)
	if err := te.Stop(); err != nil {
		logf("stop: %v; killing remaining children", err)
	}
	// A restarted child is not envtest's: it would outlive te.Stop.
	killChildren(syscall.SIGKILL)
	_ = os.Remove(filepath.Join(st, "state.json"))
	_ = os.Remove(kubeconfig)
	return 0
}

// waitReady waits for /readyz, the default namespace and every CRD being Established.
func waitReady(te *envtest.Environment) error {
	cs, err := kubernetes.NewForConfig(te.Config)
	if err != nil {
		return err
	}
	c, err := client.New(te.Config, client.Options{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error(); err != nil {
			return false, nil
		}
		if err := c.Get(ctx, client.ObjectKey{Name: "default"}, &corev1.Namespace{}); err != nil {
			return false, nil
		}
		for _, crd := range te.CRDs {
			var cur apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, client.ObjectKey{Name: crd.Name}, &cur); err != nil {
				return false, nil
			}
			established := false
			for _, cond := range cur.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					established = true
				}
			}
			if !established {
				return false, nil
			}
		}
		return true, nil
	})
}

// faults restarts children in place and compacts etcd, for chaos tests.
type faults struct {
	te              *envtest.Environment
	wrapDir         string
	etcdLog, apiLog *os.File
	state           state
}

func (f *faults) run(cmd string) (string, error) {
	began := time.Now()
	var detail string
	var err error
	switch cmd {
	case "restart kube-apiserver":
		err = f.restart("kube-apiserver", f.apiLog)
	case "restart etcd":
		err = f.restart("etcd", f.etcdLog)
	case "compact":
		detail, err = f.compact()
	default:
		err = fmt.Errorf("unknown command")
	}
	if err == nil && strings.HasPrefix(cmd, "restart") {
		// The API server answers again only when it reaches etcd, so both restarts wait for it.
		err = waitReady(f.te)
		detail = fmt.Sprintf("%.1fs", time.Since(began).Seconds())
	}
	if err == nil {
		f.state.ChildPIDs = childPIDs()
		sj, _ := json.MarshalIndent(f.state, "", "  ")
		err = writeAtomic(filepath.Join(filepath.Dir(f.state.Kubeconfig), "state.json"), append(sj, '\n'))
	}
	logf("%s: %s %v", cmd, detail, err)
	return detail, err
}

// restart stops the child named `name` (SIGTERM, as a node shutdown would) and starts it again
// with the same command line, through the same PDEATHSIG wrapper.
func (f *faults) restart(name string, log *os.File) error {
	pid, args := 0, []string(nil)
	for _, p := range childPIDs() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(argv[0]) == name {
			pid, args = p, argv[1:]
		}
	}
	if pid == 0 {
		return fmt.Errorf("no running %s", name)
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	// A short termination grace, like a pod's: kube-apiserver stops listening at once but
	// its own shutdown then often idles ~30 s (also with no client connected).
	deadline := time.Now().Add(2 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := exec.Command(filepath.Join(f.wrapDir, name), args...)
	c.Stdout, c.Stderr = log, log
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Its listening port was just freed; a restart races nothing else for it on loopback.
	if err := c.Start(); err != nil {
		return err
	}
	go func() { _ = c.Wait() }()
	return nil
}

// alive: the process exists and is not a zombie (envtest reaps its own children).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// compact compacts etcd at its current revision (physically), through etcd's JSON gateway:
// a watch resumed from an older revision then gets 410 Gone from the API server.
func (f *faults) compact() (string, error) {
	base := strings.TrimSuffix(f.te.ControlPlane.Etcd.URL.String(), "/")
	post := func(path string, body any, out any) error {
		b, _ := json.Marshal(body)
		resp, err := http.Post(base+path, "application/json", bytes.NewReader(b))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s: %s: %s", path, resp.Status, msg)
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	var status struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if err := post("/v3/maintenance/status", map[string]any{}, &status); err != nil {
		return "", err
	}
	var ignored map[string]any
	if err := post("/v3/kv/compaction", map[string]any{"revision": status.Header.Revision, "physical": true}, &ignored); err != nil {
		return "", err
	}
	return status.Header.Revision, nil
}

// childPIDs lists the direct children of this process (etcd, kube-apiserver).
func childPIDs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Format: pid (comm) state ppid ...; comm may contain spaces.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killChildren signals the process group of every direct child (envtest starts them with Setpgid).
func killChildren(sig syscall.Signal) {
	for _, pid := range childPIDs() {
		_ = syscall.Kill(-pid, sig)
		_ = syscall.Kill(pid, sig)
	}
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
