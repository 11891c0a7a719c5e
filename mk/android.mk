# Android demo (android_demo/): the platform-independent core is plain Java 17, built and tested here
# with javac and the JUnit 5 console launcher; the app module needs Android Studio (android_demo/README.md).
#
#   make android-deps   install javac (OpenJDK 17) and JUnit 5 with apt, unless both are present
#   make android-test   compile the core and its tests into build/android_core and run them
#
# android-test first writes the extra golden vectors (android_demo/tools/golden_extra.py, needs the
# runtime installed in the venv) and passes them with -Dcxr.golden.extra; every test then runs.
# Include this file from the Makefile (`include mk/android.mk`) and let `test` depend on android-deps
# (or run `make -f mk/android.mk ...`).

ANDROID_CORE        ?= android_demo/core
ANDROID_BUILD       ?= build/android_core
ANDROID_JUNIT       ?= /usr/share/java/junit-platform-console-standalone.jar
ANDROID_JAVAC       ?= javac
ANDROID_JAVA        ?= java
# The venv's Python when there is one (the Makefile's $(PY)), else python3 on the PATH.
ANDROID_PY          ?= $(firstword $(PY) $(wildcard .venv/bin/python) python3)
ANDROID_GOLDEN_EXTRA = $(ANDROID_BUILD)/golden_extra

.PHONY: android-deps android-test

# apt-get as root, or through sudo. Without either (or without a network) android-deps says so and
# `make test` goes on: tests/ports/test_android_core.py then skips with that reason instead of failing.
ANDROID_APT ?= $(if $(filter 0,$(shell id -u)),,sudo -n) env DEBIAN_FRONTEND=noninteractive apt-get

android-deps:
	@if command -v $(ANDROID_JAVAC) >/dev/null 2>&1 && [ -f $(ANDROID_JUNIT) ]; then \
		echo "android-deps: javac and JUnit 5 are installed ($(ANDROID_JUNIT))"; \
	else $(ANDROID_APT) update -qq && $(ANDROID_APT) install -y -qq --no-install-recommends \
		openjdk-17-jdk-headless junit5 \
		|| echo "android-deps: could not install javac/JUnit 5; the Android core tests will be skipped"; fi

android-test: android-deps
	rm -rf $(ANDROID_BUILD)
	mkdir -p $(ANDROID_BUILD)/main $(ANDROID_BUILD)/test
	$(ANDROID_PY) android_demo/tools/golden_extra.py $(ANDROID_GOLDEN_EXTRA) > /dev/null
	$(ANDROID_JAVAC) --release 17 -encoding UTF-8 -Xlint:all -Werror -d $(ANDROID_BUILD)/main \
		$$(find $(ANDROID_CORE)/src/main/java -name '*.java')
	$(ANDROID_JAVAC) --release 17 -encoding UTF-8 -Xlint:all -d $(ANDROID_BUILD)/test \
		-cp $(ANDROID_BUILD)/main:$(ANDROID_JUNIT) $$(find $(ANDROID_CORE)/src/test/java -name '*.java')
	$(ANDROID_JAVA) -Dcxr.repo=$(CURDIR) -Dcxr.golden.extra=$(ANDROID_GOLDEN_EXTRA) \
		-jar $(ANDROID_JUNIT) --class-path $(ANDROID_BUILD)/main:$(ANDROID_BUILD)/test \
		--scan-class-path --disable-banner --details=tree --fail-if-no-tests
