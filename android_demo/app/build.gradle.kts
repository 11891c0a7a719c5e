import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

// The cxr-edge repository around this project: the bundles, the samples and the golden vectors.
val cxrRepo: File = rootProject.projectDir.parentFile

// The named bundles shipped with the package (cxr_edge/bundle/presets.py): `default`, what
// leave-one-source-out chose (the full image; its segmenter, of role "evidence", only checks where the
// heat map's evidence lies), and `paper`, the paper's system (segmenter of role "crop": lung crop).
val cxrPresets: Map<String, File> = mapOf(
    "default" to File(cxrRepo, "cxr_edge/data/default_bundle"),
    "paper" to File(cxrRepo, "cxr_edge/data/paper_bundle"),
)

// -PcxrBundle=<preset name or folder> (default: the `default` preset). As `cxr_edge.bundle.presets.resolve`
// does, an existing folder of that name (relative to app/) wins over a preset.
val bundleDir: File = providers.gradleProperty("cxrBundle").map { value ->
    val folder = file(value)
    if (folder.exists() || value !in cxrPresets) folder else cxrPresets.getValue(value)
}.getOrElse(cxrPresets.getValue("default"))
val generatedAssets: File = layout.buildDirectory.dir("generated/cxrAssets").get().asFile
val generatedTestAssets: File = layout.buildDirectory.dir("generated/cxrTestAssets").get().asFile

// A bundle copied by hand into src/main/assets/bundle/ takes precedence over the automatic copy.
val manualBundle: Boolean = file("src/main/assets/bundle/manifest.json").isFile

// -PcxrTrustedKeys=<public key PEM or a folder of them> (`cxr-edge bundle keygen` writes public.pem): the
// app then loads only bundles signed by one of these keys and unchanged since (CXR_EDGE_TRUSTED_KEYS in
// Python). Without it, unsigned bundles load and the app shows who claims to have signed.
val trustedKeys: File? = providers.gradleProperty("cxrTrustedKeys").map { file(it) }.orNull

// assets/bundle: manifest.json, its signature.json when signed, and the .tflite and self-test files it pins;
// assets/trusted_keys: the trusted public keys; assets/samples: the shipped sample X-rays.
val copyCxrAssets by tasks.registering(Sync::class) {
    if (!manualBundle) {
        from(bundleDir) {
            include("*.json", "*.tflite")
            into("bundle")
        }
    }
    trustedKeys?.let { keys ->
        from(if (keys.isDirectory) keys else keys.parentFile) {
            include(if (keys.isDirectory) "*.pem" else keys.name)
            exclude("private*.pem") // never package a signing key
            into("trusted_keys")
        }
    }
    from(File(cxrRepo, "cxr_edge/data/samples")) {
        include("*.png", "samples.csv", "ATTRIBUTION.md")
        into("samples")
    }
    into(generatedAssets)
    doFirst {
        require(trustedKeys == null || trustedKeys.exists()) { "no trusted keys at $trustedKeys (-PcxrTrustedKeys)" }
        require(manualBundle || File(bundleDir, "manifest.json").isFile) {
            "no bundle at $bundleDir: pass -PcxrBundle=<${cxrPresets.keys.joinToString("|")} or a folder with " +
                "manifest.json> (see README.md)"
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
