// cxr-edge Android demo: `core` is the platform-independent pipeline (plain Java 17, tested on the JVM by
// `make android-test` in the repository root); `app` is the Android UI and the LiteRT model runner.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "cxr-edge-android"
include(":core", ":app")
