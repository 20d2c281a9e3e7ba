-- CreateEnum
CREATE TYPE "MedalState" AS ENUM ('VIRGIN', 'REGISTER_PROCESS', 'ENABLED', 'DISABLED');

-- CreateTable
CREATE TABLE "virgin_medals" (
    "id" SERIAL NOT NULL,
    "status" "MedalState" NOT NULL DEFAULT 'VIRGIN',
    "medal_string" TEXT NOT NULL,
    "register_hash" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "virgin_medals_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "medals" (
    "id" SERIAL NOT NULL,
    "status" "MedalState" NOT NULL DEFAULT 'REGISTER_PROCESS',
    "register_hash" TEXT NOT NULL,
    "medal_string" TEXT NOT NULL,
    "pet_name" TEXT NOT NULL,
    "owner_id" INTEGER NOT NULL,
    "image" TEXT,
    "description" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "medals_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "virgin_medals_medal_string_key" ON "virgin_medals"("medal_string");

-- CreateIndex
CREATE UNIQUE INDEX "medals_medal_string_key" ON "medals"("medal_string");

-- AddForeignKey
ALTER TABLE "medals" ADD CONSTRAINT "medals_owner_id_fkey" FOREIGN KEY ("owner_id") REFERENCES "users"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
