// vcsim: govmomi's vCenter simulator as a small program, the test peer for the portal's
// vSphere driver (composer/drivers/vsphere.py).
//
// Debian's golang-github-vmware-govmomi-dev ships the simulator package but no main, so
// this is ours. Build (tests/vsphere/build_vcsim.sh does it):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o data/vcsim ./tests/vsphere/vcsim
//
// It prints one line, "VCSIM_URL=<url>", once it listens, then serves until stdin closes
// or it gets SIGTERM/SIGINT, so a test fixture (or `make run`) owns its lifetime.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	datastores := flag.Int("ds", 2, "number of datastores (LocalDS_0, LocalDS_1, ...)")
	hosts := flag.Int("hosts", 2, "hosts in the cluster")
	machines := flag.Int("vm", 1, "VMs created per resource pool (the golden images to clone)")
	everyDelay := flag.Int("delay", 0, "latency added to every API call (ms), as a remote vCenter has")
	delay := flag.String("method-delay", "", "per-method latency, e.g. CreateSnapshot_Task=3000,PowerOnVM_Task=500 (ms)")
	username := flag.String("username", "", "the only user allowed to log in (default: any non-empty user and password)")
	password := flag.String("password", "", "that user's password")
	certOut := flag.String("tls-cert", "", "serve https with a fresh self-signed certificate written to this PEM file")
	folders := flag.Int("folder", 0, "datacenters placed in a folder (F0/DC0), with their clusters, VMs and datastores in sub-folders")
	standalone := flag.Int("standalone", 0, "standalone hosts beside the cluster")
	noDRS := flag.Bool("no-drs", false, "clusters without DRS: vCenter places no VM by itself")
	unbrowsable := flag.String("unbrowsable", "", "comma-separated datastores whose browser refuses every search")
	flag.Parse()

	model := simulator.VPX()
	model.Host = *standalone // 0: one cluster only, every datastore is seen by every host
	model.Folder = *folders
	model.ClusterHost = *hosts
	model.Datastore = *datastores
	model.Machine = *machines
	model.Autostart = false // golden images are kept powered off, as real ones are
	if *delay != "" {
		model.DelayConfig.MethodDelay = parseDelays(*delay)
	}
	model.DelayConfig.Delay = *everyDelay
	if err := model.Create(); err != nil {
		log.Fatalf("vcsim: creating the inventory: %v", err)
	}
	defer model.Remove()
	if *noDRS {
		for _, obj := range simulator.Map.All("ClusterComputeResource") {
			cluster := obj.(*simulator.ClusterComputeResource)
			cluster.ConfigurationEx.(*types.ClusterConfigInfoEx).DrsConfig.Enabled = types.NewBool(false)
		}
	}
	if *unbrowsable != "" {
		for _, name := range strings.Split(*unbrowsable, ",") {
			refuseBrowsing(name)
		}
	}

	model.Service.Listen = &url.URL{Host: *listen}
	if *username != "" {
		// The simulator checks logins only against the user in its listen URL.
		model.Service.Listen.User = url.UserPassword(*username, *password)
	}
	if *certOut != "" {
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(*certOut, *listen)}}
	}
	server := model.Service.NewServer()
	defer server.Close()

	u := *server.URL
	u.User = nil
	fmt.Printf("VCSIM_URL=%s\n", u.String())
	os.Stdout.Sync()

	done := make(chan struct{})
	go func() { commands(os.Stdin); close(done) }()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-done:
	case <-signals:
	}
}

// refusingBrowser is a datastore browser that refuses every search, as vCenter does for a
// datastore the service account may not browse, or one that is not reachable.
type refusingBrowser struct {
	*simulator.HostDatastoreBrowser
	datastore *simulator.Datastore
}

func (b *refusingBrowser) fault() *soap.Fault {
	return simulator.Fault("cannot browse datastore "+b.datastore.Name,
		&types.NoPermission{Object: b.datastore.Self, PrivilegeId: "Datastore.Browse"})
}

func (b *refusingBrowser) SearchDatastoreTask(*types.SearchDatastore_Task) soap.HasFault {
	return &methods.SearchDatastore_TaskBody{Fault_: b.fault()}
}

func (b *refusingBrowser) SearchDatastoreSubFoldersTask(*types.SearchDatastoreSubFolders_Task) soap.HasFault {
	return &methods.SearchDatastoreSubFolders_TaskBody{Fault_: b.fault()}
}

func refuseBrowsing(name string) {
	for _, obj := range simulator.Map.All("Datastore") {
		ds := obj.(*simulator.Datastore)
		if ds.Name != name {
			continue
		}
		browser := simulator.Map.Get(ds.Browser).(*simulator.HostDatastoreBrowser)
		simulator.Map.Put(&refusingBrowser{browser, ds})
		return
	}
	log.Fatalf("vcsim: -unbrowsable: no datastore %s", name)
}

// commands reads fault-injection commands from stdin until it closes, one a line, and
// answers each with "OK <line>" on stdout once it is in force:
//
//	disable VM METHOD   calls of METHOD (e.g. ReconfigVM_Task) on VM fail with MethodDisabled
//	enable VM METHOD    they work again
func commands(in io.Reader) {
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) != 3 || (fields[0] != "disable" && fields[0] != "enable") {
			fmt.Printf("ERROR %s\n", lines.Text())
			continue
		}
		// The simulator compares with its Go method names: ReconfigVM_Task -> ReconfigVMTask.
		method := strings.Replace(fields[2], "_Task", "Task", 1)
		found := false
		for _, obj := range simulator.Map.All("VirtualMachine") {
			vm := obj.(*simulator.VirtualMachine)
			if vm.Name != fields[1] {
				continue
			}
			found = true
			simulator.Map.WithLock(vm, func() {
				kept := []string{}
				for _, m := range vm.DisabledMethod {
					if m != method {
						kept = append(kept, m)
					}
				}
				if fields[0] == "disable" {
					kept = append(kept, method)
				}
				vm.DisabledMethod = kept
			})
		}
		if found {
			fmt.Printf("OK %s\n", lines.Text())
		} else {
			fmt.Printf("ERROR no VM %s\n", fields[1])
		}
		os.Stdout.Sync()
	}
}

func parseDelays(spec string) map[string]int {
	delays := map[string]int{}
	for _, item := range strings.Split(spec, ",") {
		parts := strings.SplitN(strings.TrimSpace(item), "=", 2)
		if len(parts) != 2 {
			log.Fatalf("vcsim: -method-delay: %q is not Method=milliseconds", item)
		}
		ms, err := strconv.Atoi(parts[1])
		if err != nil {
			log.Fatalf("vcsim: -method-delay: %q: %v", item, err)
		}
		delays[parts[0]] = ms
	}
	return delays
}

// selfSigned makes a P-256 certificate for the listen host and writes it as PEM, so clients
// can verify the server with it as their CA bundle. (The simulator's built-in test
// certificate has a 1024-bit key, which today's OpenSSL refuses.)
func selfSigned(path, listen string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(listen)
	template := x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "vcsim"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour * 365),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
	}
	if ip := net.ParseIP(host); ip != nil {
		template.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := ioutil.WriteFile(path, certPEM, 0o644); err != nil {
		log.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		log.Fatal(err)
	}
	return pair
}
