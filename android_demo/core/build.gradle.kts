// The platform-independent pipeline: plain Java 17, no dependencies. The repository's `make android-test`
// builds and tests it with javac and the JUnit console launcher; this file lets Gradle do the same.
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

dependencies {
    testImplementation(libs.junit.jupiter)
    testRuntimeOnly(libs.junit.platform.launcher)
}

tasks.test {
    useJUnitPlatform()
    // The golden vectors live in the cxr-edge repository around this project.
    systemProperty("cxr.repo", rootProject.projectDir.parentFile.absolutePath)
    // Extra golden vectors (python android_demo/tools/golden_extra.py DIR): -PcxrGoldenExtra=DIR
    providers.gradleProperty("cxrGoldenExtra").orNull?.let { systemProperty("cxr.golden.extra", it) }
}
