// The libdrm counterpart of test/guest/drm-syncobj.test.ts: drmGetDevices2
// and the drmSyncobj* calls on the same device, one JSON object on stdout
// that the tap test compares with the addon's answers.
//   drm_syncobj_libdrm /dev/dri/renderD129
// Each step prints its return value (0, or -errno as libdrm gives it).
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xf86drm.h>

static const char *bus_name(int bus) {
  switch (bus) {
    case DRM_BUS_PCI: return "pci";
    case DRM_BUS_USB: return "usb";
    case DRM_BUS_PLATFORM: return "platform";
    case DRM_BUS_HOST1X: return "host1x";
    default: return "other";
  }
}

static int rc(int r) { return r < 0 ? (r == -1 ? -errno : r) : r; }

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s /dev/dri/renderDN\n", argv[0]);
    return 2;
  }
  printf("{\"devices\":[");
  drmDevicePtr devs[16];
  // With the revision, which libdrm reads only when asked (else 0xff).
  int n = drmGetDevices2(DRM_DEVICE_GET_PCI_REVISION, devs, 16);
  for (int i = 0; i < n; i++) {
    drmDevicePtr d = devs[i];
    printf("%s{\"bustype\":\"%s\",\"primary\":\"%s\",\"render\":\"%s\"", i ? "," : "", bus_name(d->bustype),
           (d->available_nodes & (1 << DRM_NODE_PRIMARY)) ? d->nodes[DRM_NODE_PRIMARY] : "",
           (d->available_nodes & (1 << DRM_NODE_RENDER)) ? d->nodes[DRM_NODE_RENDER] : "");
    if (d->bustype == DRM_BUS_PCI) {
      printf(",\"pci\":{\"domain\":%u,\"bus\":%u,\"dev\":%u,\"func\":%u,\"vendorId\":%u,\"deviceId\":%u,"
             "\"subvendorId\":%u,\"subdeviceId\":%u,\"revisionId\":%u}",
             d->businfo.pci->domain, d->businfo.pci->bus, d->businfo.pci->dev, d->businfo.pci->func,
             d->deviceinfo.pci->vendor_id, d->deviceinfo.pci->device_id, d->deviceinfo.pci->subvendor_id,
             d->deviceinfo.pci->subdevice_id, d->deviceinfo.pci->revision_id);
    }
    printf("}");
  }
  if (n > 0) drmFreeDevices(devs, n);
  printf("],\"count\":%d", n);

  int fd = open(argv[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    printf(",\"open\":%d}\n", -errno);
    return 1;
  }
  uint64_t cap = 0;
  drmGetCap(fd, DRM_CAP_SYNCOBJ_TIMELINE, &cap);
  printf(",\"timeline\":%" PRIu64, cap);
  uint32_t h = 0, sig = 0, tmp = 0;
  printf(",\"create\":%d", rc(drmSyncobjCreate(fd, 0, &h)));
  printf(",\"createSignaled\":%d", rc(drmSyncobjCreate(fd, DRM_SYNCOBJ_CREATE_SIGNALED, &sig)));
  // An unsubmitted binary object, waited for submission with no time: ETIME.
  printf(",\"waitUnsignaled\":%d", rc(drmSyncobjWait(fd, &h, 1, 0, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, NULL)));
  printf(",\"waitSignaled\":%d", rc(drmSyncobjWait(fd, &sig, 1, 0, 0, NULL)));
  printf(",\"signal\":%d", rc(drmSyncobjSignal(fd, &h, 1)));
  printf(",\"waitAfterSignal\":%d", rc(drmSyncobjWait(fd, &h, 1, 0, 0, NULL)));
  printf(",\"reset\":%d", rc(drmSyncobjReset(fd, &h, 1)));
  printf(",\"waitAfterReset\":%d", rc(drmSyncobjWait(fd, &h, 1, 0, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, NULL)));
  uint64_t p1 = 1, p3 = 3, q = 0, p2 = 2, p5 = 5;
  printf(",\"timelineSignal\":%d", rc(drmSyncobjTimelineSignal(fd, &h, &p1, 1)));
  drmSyncobjTimelineSignal(fd, &h, &p3, 1);
  printf(",\"query\":%d", rc(drmSyncobjQuery(fd, &h, &q, 1)));
  printf(",\"queried\":%" PRIu64, q);
  printf(",\"timelineWait2\":%d", rc(drmSyncobjTimelineWait(fd, &h, &p2, 1, 0, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, NULL)));
  printf(",\"timelineWait5\":%d", rc(drmSyncobjTimelineWait(fd, &h, &p5, 1, 0, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, NULL)));
  drmSyncobjCreate(fd, 0, &tmp);
  printf(",\"transfer\":%d", rc(drmSyncobjTransfer(fd, tmp, 0, h, 3, 0)));
  int sf = -1;
  printf(",\"exportSyncFile\":%d", rc(drmSyncobjExportSyncFile(fd, tmp, &sf)));
  printf(",\"importSyncFile\":%d", rc(sf >= 0 ? drmSyncobjImportSyncFile(fd, sig, sf) : -EBADF));
  uint32_t empty = 0;
  drmSyncobjCreate(fd, 0, &empty);
  int none = -1;
  printf(",\"exportEmpty\":%d", rc(drmSyncobjExportSyncFile(fd, empty, &none)));
  if (sf >= 0) close(sf);
  drmSyncobjDestroy(fd, empty);
  drmSyncobjDestroy(fd, tmp);
  drmSyncobjDestroy(fd, sig);
  printf(",\"destroy\":%d", rc(drmSyncobjDestroy(fd, h)));
  printf(",\"destroyAgain\":%d}\n", rc(drmSyncobjDestroy(fd, h)));
  close(fd);
  return 0;
}
