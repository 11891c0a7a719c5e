import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

// The cxr-edge repository around this project: the default bundle, the samples and the golden vectors.
val cxrRepo: File = rootProject.projectDir.parentFile
val bundleDir: File = providers.gradleProperty("cxrBundle").map { file(it) }
    .getOrElse(File(cxrRepo, "cxr_edge/data/default_bundle"))
val generatedAssets: File = layout.buildDirectory.dir("generated/cxrAssets").get().asFile
val generatedTestAssets: File = layout.buildDirectory.dir("generated/cxrTestAssets").get().asFile

// A bundle copied by hand into src/main/assets/bundle/ takes precedence over the automatic copy.
val manualBundle: Boolean = file("src/main/assets/bundle/manifest.json").isFile

// assets/bundle: manifest.json + the .tflite files it names; assets/samples: the shipped sample X-rays.
val copyCxrAssets by tasks.registering(Sync::class) {
    if (!manualBundle) {
        from(bundleDir) {
            include("manifest.json", "*.tflite")
            into("bundle")
        }
    }
    from(File(cxrRepo, "cxr_edge/data/samples")) {
        include("*.png", "samples.csv", "ATTRIBUTION.md")
        into("samples")
    }
    into(generatedAssets)
    doFirst {
        require(manualBundle || File(bundleDir, "manifest.json").isFile) {
            "no bundle at $bundleDir: pass -PcxrBundle=<folder with manifest.json> (see README.md)"
        }
    }
}

// androidTest assets: the committed golden vectors (checked on the device with the real LiteRT runner).
val copyGoldenAssets by tasks.registering(Sync::class) {
    from(File(cxrRepo, "tests/golden")) { into("golden") }
    into(generatedTestAssets)
}

android {
    namespace = "org.cxredge.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.cxredge.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    androidResources {
        noCompress += "tflite"
    }

    sourceSets {
        getByName("main").assets.srcDir(generatedAssets)
        getByName("androidTest").assets.srcDir(generatedTestAssets)
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

tasks.named("preBuild") {
    dependsOn(copyCxrAssets, copyGoldenAssets)
}

dependencies {
    implementation(project(":core"))
    implementation(libs.litert)
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.androidx.activity.ktx)
    implementation(libs.androidx.exifinterface)
    implementation(libs.material)

    androidTestImplementation(libs.androidx.test.ext.junit)
    androidTestImplementation(libs.androidx.test.runner)
}
