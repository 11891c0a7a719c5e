# Real DICOM peers for the node's tests (tests/serve/test_dicom_peers.py): Debian's dcmtk (storescu,
# echoscu) and Orthanc. The tests start them on loopback with temporary configs and stop them.
#
#   make dicom-deps   install both with apt unless present; without apt (or a network) it says so and
#                     `make test` goes on: those tests then skip with that reason.
#
# Included from the Makefile; `test` depends on dicom-deps. APT comes from mk/web.mk.

.PHONY: dicom-deps

dicom-deps:
	@if command -v storescu >/dev/null 2>&1 && command -v echoscu >/dev/null 2>&1 \
		&& { command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ]; }; then \
		echo "dicom-deps: dcmtk and Orthanc are installed"; \
	else $(APT) update -qq && $(APT) install -y -qq dcmtk orthanc \
		|| echo "dicom-deps: could not install dcmtk/orthanc; the real-peer tests will be skipped"; fi
